"""docs/configuration.md: lookup order, ISSUER_* overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.core.config import load_config, parse_rate_limit, validate_issuer_url
from issuer.core.errors import ConfigError

BASIC = 'issuer = "https://connectors.example.com"\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "issuer.toml", BASIC), env={})
    assert cfg.issuer == "https://connectors.example.com"
    assert cfg.keys_dir == tmp_path / "keys"
    assert cfg.templates_dir == tmp_path / "templates"
    assert cfg.database == tmp_path / "issuer.db"
    assert cfg.default_alg == "ES256"
    assert cfg.max_lifetime == 400 * 86400
    assert (cfg.service.host, cfg.service.port, cfg.service.jwks_max_age) == ("127.0.0.1", 8000, 300)
    assert str(cfg.service.rate_limit) == "600/minute"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write(tmp_path / "a.toml", 'issuer = "https://a.example"\n')
    b = write(tmp_path / "b.toml", 'issuer = "https://b.example"\n')
    (tmp_path / "cwd").mkdir()
    write(tmp_path / "cwd" / "issuer.toml", 'issuer = "https://cwd.example"\n')
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_config(a, env={"ISSUER_CONFIG": str(b)}).issuer == "https://a.example"
    assert load_config(None, env={"ISSUER_CONFIG": str(b)}).issuer == "https://b.example"
    assert load_config(None, env={}).issuer == "https://cwd.example"


def test_missing_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no configuration file at issuer.toml.*issuer init"):
        load_config(None, env={})
    with pytest.raises(ConfigError, match="from ISSUER_CONFIG"):
        load_config(None, env={"ISSUER_CONFIG": str(tmp_path / "nope.toml")})


def test_env_overrides_every_key(tmp_path: Path) -> None:
    path = write(tmp_path / "issuer.toml", BASIC)
    env = {
        "ISSUER_ISSUER": "https://override.example",
        "ISSUER_DEFAULT_ALG": "EdDSA",
        "ISSUER_MAX_LIFETIME": "30d",
        "ISSUER_SERVICE_PORT": "9001",
        "ISSUER_SERVICE_JWKS_MAX_AGE": "60",
        "ISSUER_SERVICE_RATE_LIMIT": "unlimited",
        "ISSUER_SERVICE_HOST": "127.0.0.2",
        "ISSUER_DATABASE": str(tmp_path / "other.db"),
        "ISSUER_KEY_PASSPHRASE": "not a config key, ignored here",
    }
    cfg = load_config(path, env=env)
    assert cfg.issuer == "https://override.example"
    assert cfg.default_alg == "Ed25519"  # RFC 9864: EdDSA is the alias
    assert cfg.max_lifetime == 30 * 86400
    assert cfg.service.port == 9001 and cfg.service.jwks_max_age == 60
    assert cfg.service.rate_limit is None and cfg.service.host == "127.0.0.2"
    assert cfg.database == tmp_path / "other.db"


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        ("issuer = [", {}, "not valid TOML"),
        (BASIC + "colour = 'blue'\n", {}, "unknown key 'colour'"),
        (BASIC + "[servce]\nport = 1\n", {}, "unknown table [servce]"),
        (BASIC + "[service]\nprot = 1\n", {}, "unknown key 'service.prot'"),
        ("keys_dir = 'k'\n", {}, "key 'issuer': is required"),
        ('issuer = "http://connectors.example.com"\n', {}, "only https is allowed except on localhost"),
        ('issuer = "ftp://connectors.example.com"\n', {}, "not an absolute https URL"),
        ('issuer = "https://x.example/?a=1"\n', {}, "query or fragment"),
        ('issuer = "https://x.example/"\n', {}, "must not end with '/'"),
        ('issuer = "https://u:p@x.example"\n', {}, "userinfo"),
        (BASIC + 'default_alg = "HS256"\n', {}, "not a supported signing algorithm"),
        (BASIC + 'default_alg = "none"\n', {}, "not a supported signing algorithm"),
        (BASIC + 'max_lifetime = "forever"\n', {}, "not a duration"),
        (BASIC + "[service]\nport = 70000\n", {}, "not a TCP port"),
        (BASIC + "[service]\njwks_max_age = -5\n", {}, "not a positive integer"),
        (BASIC + '[service]\nrate_limit = "lots"\n', {}, "not a rate"),
        (BASIC + '[service]\nweb = "yes"\n', {}, "key 'service.web': 'yes' is not true or false"),
        (BASIC, {"ISSUER_SERVICE_WEB": "off"}, "environment ISSUER_SERVICE_WEB"),
        (BASIC + '[service]\nsession_lifetime = "a while"\n', {}, "not a duration"),
        (BASIC, {"ISSUER_SERVICE_PORT": "eighty"}, "environment ISSUER_SERVICE_PORT"),
        (BASIC, {"ISSUER_ISSUR": "https://typo.example"}, "unknown variable ISSUER_ISSUR"),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, body: str, env: dict[str, str],
                                    message: str) -> None:
    path = write(tmp_path / "issuer.toml", body)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert message in info.value.description
    assert "\n" not in info.value.description
    assert info.value.exit_code == 2


@pytest.mark.parametrize("url", ["http://localhost:8000", "http://127.0.0.1", "http://[::1]:9",
                                 "https://connectors.example.com/tenant-a"])
def test_accepted_issuers(url: str) -> None:
    assert validate_issuer_url(url) == url


def test_rate_limit_parsing() -> None:
    limit = parse_rate_limit("10/second")
    assert limit is not None and (limit.count, limit.period) == (10, 1)
    assert parse_rate_limit("unlimited") is None
    with pytest.raises(ValueError):
        parse_rate_limit("0/minute")
