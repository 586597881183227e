"""issuer.toml: lookup, parsing, ``ISSUER_*`` overrides and validation (docs/configuration.md)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from issuer.core.clock import parse_duration
from issuer.core.errors import ConfigError
from issuer.core.metadata import is_loopback_host

CONFIG_FILE = "issuer.toml"

#: JWS algorithms a statement may be signed with; ``EdDSA`` is the RFC 8037 polymorphic name,
#: accepted as an alias of the fully-specified ``Ed25519`` (RFC 9864 section 2.2).
SIGNING_ALGS = ("ES256", "ES384", "PS256", "RS256", "Ed25519")
ALG_ALIASES = {"EdDSA": "Ed25519"}

#: Environment variables of the issuer that are not configuration keys.
NON_CONFIG_ENV = {"ISSUER_CONFIG", "ISSUER_KEY_PASSPHRASE", "ISSUER_KEY_PASSPHRASE_FILE",
                  "ISSUER_DEBUG"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour)\s*\Z")
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600}


@dataclass(frozen=True)
class RateLimit:
    """``N/minute`` style limit; ``None`` in place of one means unlimited."""

    count: int
    period: int  # seconds

    def __str__(self) -> str:
        unit = {v: k for k, v in _RATE_UNITS.items()}[self.period]
        return f"{self.count}/{unit}"


def parse_rate_limit(text: object) -> RateLimit | None:
    """``"600/minute"`` -> RateLimit(600, 60); ``"unlimited"`` -> None."""
    if text == "unlimited":
        return None
    m = _RATE.match(text) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a rate like '600/minute' (or 'unlimited')")
    return RateLimit(int(m.group(1)), _RATE_UNITS[m.group(2)])


def normalize_alg(value: object) -> str:
    """Map a configured algorithm name to the JWS ``alg`` we sign with."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an algorithm name")
    alg = ALG_ALIASES.get(value, value)
    if alg not in SIGNING_ALGS:
        raise ValueError(
            f"{value!r} is not a supported signing algorithm (one of {', '.join(SIGNING_ALGS)}; "
            "EdDSA is accepted for Ed25519)"
        )
    return alg


def validate_issuer_url(value: object) -> str:
    """The ``iss`` value: https, or http only for localhost; no query, fragment or userinfo."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a URL string")
    if _CONTROL.search(value):
        raise ValueError(f"{value!r} contains a control character")
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{value!r} is not an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError(f"{value!r} uses http; only https is allowed except on localhost")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError(f"{value!r} must not have a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} must not carry userinfo")
    if value.endswith("/"):
        raise ValueError(f"{value!r} must not end with '/' (iss is compared as a string)")
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def _port(value: object) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise ValueError(f"{port} is not a TCP port")
    return port


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _duration(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return parse_duration(value)


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # from the environment: ISSUER_SERVICE_WEB=false
    raise ValueError(f"{value!r} is not true or false")


def validate_key_backend(value: object) -> str:
    """``file`` or a key URI ``scheme:attributes`` (docs/keys.md); the backend checks the rest."""
    text = _string(value).strip()
    if text != "file" and not re.fullmatch(r'[a-z][a-z0-9]*:[^\s"\\]*', text):
        raise ValueError(f"{text!r} is neither 'file' nor a key URI such as 'pkcs11:token=...'")
    return text


def _optional_duration(value: object) -> int | None:
    """A duration, or ``"never"`` for none."""
    return None if value in (None, "never") else _duration(value)


def _status_list_size(value: object) -> int:
    size = _positive_int(value)
    if not 1024 <= size <= 16 * 1024 * 1024:
        raise ValueError(f"{size} is outside 1024..16777216 statements per list")
    return size


def _optional_string(value: object) -> str | None:
    return None if value is None else _string(value)


#: The longest a minter token from a CI token exchange may live: it only has to outlast one job.
MAX_EXCHANGE_LIFETIME = 3600


def _exchange_lifetime(value: object) -> int:
    seconds = _duration(value)
    if seconds > MAX_EXCHANGE_LIFETIME:
        raise ValueError(f"{value!r} is longer than 1h; a pipeline's minter token only has to "
                         "outlast one job")
    return seconds


_REQUIRED = object()


_Parser = Callable[[object], Any]

#: Every configuration key, its parser and default. Nested tables use "table.key".
_SCHEMA: dict[str, tuple[_Parser, object]] = {
    "issuer": (validate_issuer_url, _REQUIRED),
    "keys_dir": (_string, "keys"),
    "templates_dir": (_string, "templates"),
    "database": (_string, "issuer.db"),
    "default_alg": (normalize_alg, "ES256"),
    "key_backend": (validate_key_backend, "file"),
    "max_lifetime": (_duration, "400d"),
    "rotation_period": (_optional_duration, "never"),
    "key_grace_period": (_duration, "1d"),
    "status_list_size": (_status_list_size, 131072),
    "status_list_ttl": (_positive_int, 300),
    "service.host": (_string, "127.0.0.1"),
    "service.port": (_port, 8000),
    "service.jwks_max_age": (_positive_int, 300),
    "service.rate_limit": (parse_rate_limit, "600/minute"),
    "service.web": (_bool, True),
    "service.session_lifetime": (_duration, "8h"),
    "trusted_publishing.audience": (_optional_string, None),
    "trusted_publishing.token_lifetime": (_exchange_lifetime, "15m"),
}
#: Tables that hold nested keys; ``[[trusted_publishers]]`` is kept as given and checked by
#: issuer.core.publishers (docs/pipelines.md).
_TABLES = ("service", "trusted_publishing")
PUBLISHERS_KEY = "trusted_publishers"
_PATH_KEYS = ("keys_dir", "templates_dir", "database")


def is_database_url(database: str | Path) -> bool:
    """A ``database`` naming a PostgreSQL server (``postgresql://...``), not a SQLite file."""
    return isinstance(database, str) and "://" in database and \
        database.split("://", 1)[0] in ("postgresql", "postgres", "postgresql+psycopg")


@dataclass(frozen=True)
class ServiceConfig:
    """The ``[service]`` table."""

    host: str
    port: int
    jwks_max_age: int
    rate_limit: RateLimit | None
    #: Whether the web view for auditors is served under /ui/ (docs/web.md).
    web: bool = True
    #: How long a web view sign-in lasts.
    session_lifetime: int = 8 * 3600


@dataclass(frozen=True)
class Config:
    """A loaded, validated issuer configuration; paths are absolute."""

    path: Path
    issuer: str
    keys_dir: Path
    templates_dir: Path
    #: A SQLite file, or a ``postgresql://`` URL shared by replicas (docs/operations.md).
    database: Path | str
    default_alg: str
    #: Where private keys live: "file", or a key URI (pkcs11:..., awskms:...).
    key_backend: str
    max_lifetime: int
    #: Seconds between scheduled key rotations; None: rotate only when told to.
    rotation_period: int | None
    #: How long a retired key stays published after the last statement it signed expires.
    key_grace_period: int
    #: Statements per Token Status List, and how long verifiers may cache one (seconds).
    status_list_size: int
    status_list_ttl: int
    service: ServiceConfig
    #: ``aud`` a CI ID token must carry, and how long an exchanged minter token lives.
    exchange_audience: str = ""
    exchange_lifetime: int = 900
    #: The ``[[trusted_publishers]]`` tables as written (issuer.core.publishers checks them).
    publishers: tuple[dict[str, Any], ...] = ()

    @property
    def home(self) -> Path:
        """The directory holding issuer.toml."""
        return self.path.parent


def env_name(key: str) -> str:
    """``service.port`` -> ``ISSUER_SERVICE_PORT``."""
    return "ISSUER_" + key.replace(".", "_").upper()


def find_config(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The lookup order (docs/configuration.md): ``--config PATH``, then ``ISSUER_CONFIG``, then ``./issuer.toml``."""
    if explicit:
        candidate, origin = Path(explicit), "--config"
    elif env.get("ISSUER_CONFIG"):
        candidate, origin = Path(env["ISSUER_CONFIG"]), "ISSUER_CONFIG"
    else:
        candidate, origin = Path(CONFIG_FILE), "the current directory"
    if not candidate.is_file():
        hint = "" if origin != "the current directory" else "; run `issuer init` or pass --config"
        raise ConfigError(f"no configuration file at {candidate} (from {origin}){hint}")
    return candidate.resolve()


def _flatten(data: Mapping[str, Any], path: Path) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        if key == PUBLISHERS_KEY:
            continue
        if isinstance(value, dict):
            if key not in _TABLES:
                known = ", ".join(f"[{t}]" for t in (*_TABLES, f"[{PUBLISHERS_KEY}]"))
                raise ConfigError(f"{path}: unknown table [{key}] (known: {known})")
            for sub, subvalue in value.items():
                flat[f"{key}.{sub}"] = subvalue
        else:
            flat[key] = value
    for key in flat:
        if key not in _SCHEMA:
            known = ", ".join(sorted(_SCHEMA))
            raise ConfigError(f"{path}: unknown key '{key}' (known keys: {known})")
    return flat


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    names = {env_name(key): key for key in _SCHEMA}
    overrides: dict[str, str] = {}
    for var, value in env.items():
        if not var.startswith("ISSUER_") or var in NON_CONFIG_ENV:
            continue
        if var not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"environment: unknown variable {var} (known: {known})")
        overrides[names[var]] = value
    return overrides


def load_config(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Find, read and validate the configuration; raise ConfigError naming file and key."""
    env = os.environ if env is None else env
    path = find_config(explicit, env)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    flat = _flatten(data, path)
    publishers = data.get(PUBLISHERS_KEY, [])
    if not isinstance(publishers, list) or not all(isinstance(p, dict) for p in publishers):
        raise ConfigError(f"{path}: '{PUBLISHERS_KEY}' must be an array of tables "
                          f"([[{PUBLISHERS_KEY}]])")
    overrides = _env_overrides(env)
    values: dict[str, Any] = {}
    for key, (parse, default) in _SCHEMA.items():
        origin = f"{path}: key '{key}'"
        raw: object = default
        if key in overrides:
            raw, origin = overrides[key], f"environment {env_name(key)}"
        elif key in flat:
            raw = flat[key]
        if raw is _REQUIRED:
            raise ConfigError(f"{origin}: is required")
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        if key in _PATH_KEYS and not (key == "database" and is_database_url(values[key])):
            # docs/configuration.md: relative paths in the file are relative to the file; in the environment,
            # relative to the working directory, like any other command-line path.
            base = Path.cwd() if key in overrides else path.parent
            values[key] = (base / values[key]).resolve()
    return Config(
        path=path,
        issuer=values["issuer"],
        keys_dir=values["keys_dir"],
        templates_dir=values["templates_dir"],
        database=values["database"],
        default_alg=values["default_alg"],
        key_backend=values["key_backend"],
        max_lifetime=values["max_lifetime"],
        rotation_period=values["rotation_period"],
        key_grace_period=values["key_grace_period"],
        status_list_size=values["status_list_size"],
        status_list_ttl=values["status_list_ttl"],
        service=ServiceConfig(
            host=values["service.host"],
            port=values["service.port"],
            jwks_max_age=values["service.jwks_max_age"],
            rate_limit=values["service.rate_limit"],
            web=values["service.web"],
            session_lifetime=values["service.session_lifetime"],
        ),
        exchange_audience=values["trusted_publishing.audience"] or values["issuer"],
        exchange_lifetime=values["trusted_publishing.token_lifetime"],
        publishers=tuple(publishers),
    )


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: JSON's escapes are TOML's, plus DEL (TOML 1.0
    "String"), so no value can end the string or add a key of its own."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def render_config(issuer: str, alg: str, database: str = "issuer.db",
                  key_backend: str = "file") -> str:
    """The issuer.toml that ``issuer init`` writes."""
    return f'''# Software statement issuer configuration (see docs/configuration.md).
issuer = {toml_string(issuer)}   # the iss claim of every statement
keys_dir = "keys"
templates_dir = "templates"
database = {toml_string(database)}         # a SQLite file, or postgresql://user@host/db
default_alg = {toml_string(alg)}
key_backend = {toml_string(key_backend)}   # where private keys live (docs/keys.md)
max_lifetime = "400d"
rotation_period = "90d"        # scheduled key rotation ("never" to rotate only by hand)
key_grace_period = "1d"        # a retired key stays published this long after its last statement expires
status_list_size = 131072      # statements per Token Status List (docs/revocation.md)
status_list_ttl = 300          # seconds verifiers may cache a status list

[service]
host = "127.0.0.1"
port = 8000
jwks_max_age = 300
rate_limit = "600/minute"
web = true                     # the web view for auditors under /ui/ (docs/web.md)
session_lifetime = "8h"        # how long a web view sign-in lasts
'''
