"""Input edges at the CLI: names with a trailing newline, hostile issuer URLs, a failed init."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from issuer.cli import cli as issuer_cli
from tests.conftest import Cli, assert_one_line_error


def test_names_with_a_trailing_newline_are_refused(cli: Cli) -> None:
    # `$` matches before a final newline; names are checked to their very end.
    created = cli("tokens", "create", "ci-calendar\n", "--role", "minter",
                  "--template", "mcp-connector")
    assert_one_line_error(created, 2, "ci-calendar")
    assert cli("tokens", "list", "--json").stdout.count("ci-calendar") == 0
    minted = cli("mint", "--template", "mcp-connector\n", "--claim", "software_version=1")
    assert minted.exit_code != 0 and "Traceback" not in minted.stderr
    (cli.home / "templates" / "child.toml").write_text('extends = "mcp-connector\\n"\n')
    assert cli("templates", "show", "child").exit_code != 0


@pytest.mark.parametrize("url", ['https://issuer.example.com/a"b', "https://issuer.example.com/a\\b"])
def test_init_writes_the_issuer_url_as_a_toml_string(tmp_path: Path, url: str) -> None:
    result = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path), "--issuer", url])
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads((tmp_path / "issuer.toml").read_text())["issuer"] == url
    shown = CliRunner().invoke(issuer_cli, ["jwks", "--config", str(tmp_path / "issuer.toml")])
    assert shown.exit_code == 0, shown.stderr


@pytest.mark.parametrize("url", ["https://issuer.example.com/\nbogus = 1",
                                 "https://issuer.example.com/a\x7fb",
                                 "https://issuer.example.com/\tx"])
def test_init_refuses_control_characters_in_the_issuer_url(tmp_path: Path, url: str) -> None:
    result = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path), "--issuer", url])
    assert_one_line_error(result, 2, "control character")
    assert not (tmp_path / "issuer.toml").exists()


def test_a_failed_init_leaves_nothing_that_blocks_a_rerun(tmp_path: Path) -> None:
    # The PIN file is read only when the keystore opens, after issuer.toml is written.
    target = tmp_path / "home"
    backend = "pkcs11:token=absent?module-path=/nonexistent.so&pin-source=file:/nonexistent"
    failed = CliRunner().invoke(issuer_cli, ["init", "--dir", str(target), "--key-backend", backend])
    assert_one_line_error(failed, 1, "PIN file")
    assert not (target / "issuer.toml").exists() and not (target / "issuer.db").exists()
    assert not (target / "keys" / "keyring.json").exists()
    again = CliRunner().invoke(issuer_cli, ["init", "--dir", str(target)])
    assert again.exit_code == 0, again.stderr


def test_an_init_failing_after_its_first_key_leaves_no_key_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from issuer.core.errors import KeystoreError
    from issuer.keys.lifecycle import KeyLifecycle

    def fail(*args: object, **kwargs: object) -> None:
        raise KeystoreError("the next key could not be made")

    target = tmp_path / "home"
    with monkeypatch.context() as patch:
        patch.setattr(KeyLifecycle, "ensure_next", fail)
        failed = CliRunner().invoke(issuer_cli, ["init", "--dir", str(target)])
    assert_one_line_error(failed, 1, "the next key could not be made")
    assert sorted(p.name for p in (target / "keys").iterdir()) == [".gitignore"]
    assert not (target / "issuer.toml").exists() and not (target / "issuer.db").exists()
    again = CliRunner().invoke(issuer_cli, ["init", "--dir", str(target)])
    assert again.exit_code == 0, again.stderr
