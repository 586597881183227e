"""What every command inherits from issuer/cli/common.py (docs/cli.md, "Conventions"): -h,
an example in each help text, --json on data commands and JSON errors with it, identifiers
beginning with '-', Ctrl-C as exit 130, shell completion. Each test walks the command tree, so
a command added later is held to the same rules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from issuer.cli import cli as issuer_cli
from tests.cli.test_cli import all_commands
from tests.conftest import Cli, installed_issuer

#: Commands that print no data: what they print is a server's log or a shell script.
NO_DATA = {("serve",), ("completion",)}


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = issuer_cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def leaves() -> list[tuple[str, ...]]:
    return [p for p in all_commands() if not isinstance(command_at(p), click.Group)]


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_dash_h_works_on_every_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(issuer_cli, [*path, "-h"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: issuer {' '.join(path)} ")


@pytest.mark.parametrize("path", leaves(), ids=" ".join)
def test_every_help_text_ends_with_an_example(path: tuple[str, ...]) -> None:
    text = CliRunner().invoke(issuer_cli, [*path, "--help"]).stdout
    example = text.split("Example", 1)[1].split("Options:", 1)[0] if "Example" in text else ""
    assert f"issuer {path[0]}" in example, f"issuer {' '.join(path)} --help has no example"


@pytest.mark.parametrize("path", [p for p in leaves() if p not in NO_DATA], ids=" ".join)
def test_every_data_command_takes_json(path: tuple[str, ...]) -> None:
    names = {n for p in command_at(path).params for n in getattr(p, "opts", [])}
    assert "--json" in names, f"issuer {' '.join(path)} prints data: give it --json"


def json_error(result: click.testing.Result, code: int, error: str, *fragments: str) -> None:
    """One JSON object on one line of stderr, the HTTP API's error shape, and the exit code."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    body = json.loads(lines[0])
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error, body
    for fragment in fragments:
        assert fragment in body["error_description"], body


def test_errors_are_json_objects_with_json(cli: Cli) -> None:
    json_error(cli("audit", "show", "nope-nope-nope", "--json"), 1, "not_found",
               "no statement with jti 'nope-nope-nope'")
    json_error(cli("mint", "mcp-conector", "--json"), 1, "not_found",
               "did you mean 'mcp-connector'?")
    json_error(cli("mint", "--nope", "--json"), 2, "invalid_request", "No such option")
    json_error(cli("keys", "list", "--json", config=False,
                   env={"ISSUER_CONFIG": str(cli.home / "missing.toml")}),
               2, "invalid_configuration")
    json_error(cli("tokens", "revoke", "nobody", "--json"), 1, "not_found", "nobody")
    # without --json, the same error is the one text line
    text = cli("audit", "show", "nope-nope-nope")
    assert text.stderr.startswith("issuer: error: no statement with jti")


def test_dash_identifiers_and_mistyped_options(cli: Cli) -> None:
    helped = cli("keys", "revoke", "-h")
    assert helped.exit_code == 0 and helped.stdout.startswith("Usage: issuer keys revoke")
    typo = cli("revoke", "-Abc", "--reasn", "x")
    assert typo.exit_code == 2 and "Did you mean '--reason'?" in typo.stderr
    # an identifier after "--" is an identifier too, as click users expect
    after = cli("audit", "show", "--config", str(cli.home / "issuer.toml"), "--json", "--",
                "-hX3Fq", config=False)
    assert "'-hX3Fq'" in after.stderr and after.exit_code == 1


def stderr_lines(process: subprocess.Popen[str]) -> Iterator[str]:
    assert process.stderr is not None
    yield from iter(process.stderr.readline, "")


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
    """Lines of stderr up to the one holding ``marker``, read as they come (no sleep); fails
    after ``timeout`` seconds by killing the process."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    seen: list[str] = []
    try:
        for line in stderr_lines(process):
            seen.append(line)
            if marker in line:
                return seen
    finally:
        timer.cancel()
    raise AssertionError(f"{marker!r} never came: {''.join(seen)}")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}


def test_ctrl_c_exits_130_and_says_what_is_true(tmp_path: Path) -> None:
    env = clean_env()
    issuer = installed_issuer()
    subprocess.run([issuer, "init"], cwd=tmp_path, env=env, check=True, capture_output=True)
    before = subprocess.run([issuer, "keys", "list", "--json"], cwd=tmp_path, env=env,
                            check=True, capture_output=True, text=True).stdout
    process = subprocess.Popen([issuer, "keys", "rotate", "--wait"], cwd=tmp_path, env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    read_until(process, "waiting until")  # in the wait: the next key is not old enough yet
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert process.stderr is not None
    rest = process.stderr.read()
    assert rest.strip() == ("issuer: error: interrupted (Ctrl-C) while waiting; no key was "
                            "rotated"), rest
    after = subprocess.run([issuer, "keys", "list", "--json"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout
    def states(listing: str) -> list[tuple[str, str]]:
        return [(k["kid"], k["state"]) for k in json.loads(listing)]

    assert states(after) == states(before)  # truthful: nothing rotated


def test_completion_scripts_complete_commands(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(issuer_cli, ["completion", shell])
        assert result.exit_code == 0 and "_ISSUER_COMPLETE" in result.stdout, shell
    assert CliRunner().invoke(issuer_cli, ["completion", "tcsh"]).exit_code == 2
    if shutil.which("bash") is None:
        pytest.skip("the completion script is run by bash")
    script = tmp_path / "issuer.bash"
    script.write_text(CliRunner().invoke(issuer_cli, ["completion", "bash"]).stdout)
    env = clean_env()
    env["PATH"] = f"{Path(installed_issuer()).parent}{os.pathsep}{env.get('PATH', '')}"

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        run = subprocess.run(
            ["bash", "-c", f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                           '_issuer_completion issuer; printf "%s\\n" "${COMPREPLY[@]}"'],
            env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert complete("issuer", "au") == ["audit"]
    assert complete("issuer", "audit", "l") == ["list"]
    assert "--newest-first" in complete("issuer", "audit", "list", "--n")
    assert complete("issuer", "keys", "revoke", "x", "--reason", "comp") == ["compromised"]
