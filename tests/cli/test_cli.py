"""The CLI as a whole: init, errors, help, and the installed command in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from issuer.cli import cli as issuer_cli
from tests.conftest import Cli, assert_one_line_error, installed_issuer


def all_commands(group: click.Group = issuer_cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
    return found


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help_and_config(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(issuer_cli, [*path, "--help"])
    assert result.exit_code == 0
    command = issuer_cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help.strip()) > 20, path
    if not isinstance(command, click.Group):
        assert "--config" in result.stdout, path


def test_init_creates_an_issuer_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "home"
    result = runner.invoke(issuer_cli, ["init", "--dir", str(target), "--issuer",
                                        "https://connectors.example.com", "--alg", "EdDSA"])
    assert result.exit_code == 0, result.stderr
    assert (target / "issuer.toml").read_text().count('issuer = "https://connectors.example.com"') == 1
    assert (target / "issuer.db").exists()
    ring = json.loads((target / "keys" / "keyring.json").read_text())
    assert [(k["alg"], k["state"]) for k in ring["keys"]] == [("Ed25519", "active"),
                                                              ("Ed25519", "next")]
    assert sorted(p.name for p in (target / "templates").glob("*.toml")) == [
        "desktop-agent.toml", "mcp-connector.toml", "publisher-base.toml", "workflow-runner.toml"]
    assert (target / "keys" / ".gitignore").read_text().strip().endswith("*")
    again = runner.invoke(issuer_cli, ["init", "--dir", str(target)])
    assert_one_line_error(again, 1, "an issuer already exists", "refusing to overwrite")
    bad = runner.invoke(issuer_cli, ["init", "--dir", str(tmp_path / "x"), "--issuer",
                                     "http://public.example.com"])
    assert_one_line_error(bad, 2, "only https is allowed except on localhost")
    assert not (tmp_path / "x" / "issuer.toml").exists()


def test_init_keeps_a_users_own_template(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "desktop-agent.toml").write_text("# mine\n")
    result = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "templates" / "desktop-agent.toml").read_text() == "# mine\n"


def test_missing_or_bad_config_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert_one_line_error(runner.invoke(issuer_cli, ["jwks"]), 2, "no configuration file")
    (tmp_path / "issuer.toml").write_text('issuer = "https://x.example"\nbogus = 1\n')
    assert_one_line_error(runner.invoke(issuer_cli, ["keys", "list"]), 2, "unknown key 'bogus'")
    (tmp_path / "issuer.toml").write_text('issuer = "https://x.example"\n')
    assert_one_line_error(runner.invoke(issuer_cli, ["jwks"], env={"ISSUER_SERVICE_PORT": "x"}),
                          2, "ISSUER_SERVICE_PORT")


def test_config_via_environment_and_group_option(cli: Cli) -> None:
    env_run = cli("templates", "list", config=False, env={"ISSUER_CONFIG": str(cli.home / "issuer.toml")})
    assert env_run.exit_code == 0 and "mcp-connector" in env_run.stdout
    group = CliRunner().invoke(issuer_cli, ["--config", str(cli.home / "issuer.toml"), "jwks"])
    assert group.exit_code == 0 and json.loads(group.stdout)["keys"]


def test_templates_list_and_show(cli: Cli) -> None:
    listed = json.loads(cli("templates", "list", "--json").stdout)
    assert {t["name"] for t in listed} == {"desktop-agent", "mcp-connector", "publisher-base",
                                           "workflow-runner"}
    assert all(t["valid"] for t in listed)
    shown = json.loads(cli("templates", "show", "mcp-connector", "--json").stdout)
    assert shown["extends"] == ["publisher-base"]
    assert shown["claims"]["contacts"] == ["security@example.com"]  # inherited
    assert shown["claims"]["token_endpoint_auth_method"] == "private_key_jwt"
    assert shown["required"] == ["software_version"]
    text = cli("templates", "show", "desktop-agent").stdout
    assert "lifetime:    90d" in text and '"application_type": "native"' in text
    assert_one_line_error(cli("templates", "show", "nope"), 1, "no template named 'nope'")


def test_broken_template_is_listed_as_invalid(cli: Cli) -> None:
    (cli.home / "templates" / "broken.toml").write_text("lifetime = [")
    listed = json.loads(cli("templates", "list", "--json").stdout)
    assert next(t for t in listed if t["name"] == "broken")["valid"] is False
    assert_one_line_error(cli("mint", "broken"), 1, "broken.toml", "not valid TOML")


def test_internal_errors_are_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from issuer.core import authority

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(authority.Authority, "jwks", boom)
    assert_one_line_error(cli("jwks"), 1, "internal error: RuntimeError: unexpected")


def test_installed_command_in_a_subprocess(tmp_path: Path) -> None:
    """The console script end to end: init, mint, verify, audit, as a user would run it."""
    exe = installed_issuer()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], cwd=tmp_path, env=env, input=stdin, text=True,
                              capture_output=True, timeout=60)

    assert run("init", "--issuer", "https://connectors.example.com").returncode == 0
    minted = run("mint", "mcp-connector", "--set", "software_version=1.2.3", "--json")
    assert minted.returncode == 0, minted.stderr
    token = json.loads(minted.stdout)["software_statement"]
    verified = run("verify", "-", stdin=token)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["software_version"] == "1.2.3"
    assert json.loads(run("audit", "list", "--json").stdout)[0]["software_version"] == "1.2.3"
    failed = run("verify", token + "x")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    usage = run("mint", "--nope")
    assert usage.returncode == 2 and usage.stderr.startswith("issuer: error: No such option")


@pytest.mark.parametrize("ident", ["-8F3Fq", "-hX3Fq", "--Xy_z"])
@pytest.mark.parametrize("args", [["audit", "show", "ID"], ["audit", "proof", "ID"],
                                  ["revoke", "ID", "--reason", "x"],
                                  ["keys", "revoke", "ID", "--reason", "superseded"]])
def test_identifiers_may_begin_with_a_dash(cli: Cli, args: list[str], ident: str) -> None:
    """base64url jtis and kids can start with '-', even '-h': identifiers, not options."""
    result = cli(*[ident if a == "ID" else a for a in args])
    assert_one_line_error(result, 1, ident)
    assert "No such option" not in result.stderr
