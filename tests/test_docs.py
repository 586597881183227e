"""Docs that stay true: every command is documented, every documented command exists."""

from __future__ import annotations

import re
from pathlib import Path

import click

from issuer.cli import cli as issuer_cli
from tests.cli.test_cli import all_commands

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_is_in_the_cli_page() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    for path in all_commands():
        assert f"issuer {' '.join(path)}" in page, path


def test_every_documented_command_exists() -> None:
    known = {" ".join(p) for p in all_commands()}
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    for match in re.finditer(r"`issuer ((?:[a-z]+)(?: [a-z]+)?)", text):
        words = match.group(1).split()
        assert " ".join(words) in known or words[0] in known, match.group(0)


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_docs_links_resolve() -> None:
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), (page.name, target)


def test_the_readme_tour_runs(tmp_path: Path) -> None:
    """The five-minute tour, run as written (in a temporary directory, on a free port)."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    import pytest

    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the tour uses bash and curl")
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```sh\n# 1. An issuer of your own")
    script = readme[start + len("```sh\n"):readme.index("```", start + 6)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = script.replace("/tmp/acme", str(tmp_path / "acme")).replace("8080", str(port))
    ready = (f"for i in $(seq 100); do curl -s http://127.0.0.1:{port}/healthz > /dev/null "
             "&& break; sleep 0.2; done")
    assert "& sleep 2" in script
    script = script.replace("& sleep 2", "& " + ready)  # a slow machine may need longer
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "-e", "-c", "umask 022\n" + script], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    [token_file] = tmp_path.rglob("ci.token")
    assert token_file.stat().st_mode & 0o077 == 0, "the tour left a token readable by others"
    assert (tmp_path / "acme" / "issuer.db").stat().st_mode & 0o077 == 0
    assert "refused, as it should be" in result.stdout
    assert '"software_statement"' in result.stdout  # the curl mint


def _cli_page_usages() -> list[str]:
    """Every `issuer ...` code span and every `issuer ...` line of a code block in docs/cli.md."""
    page = (ROOT / "docs" / "cli.md").read_text()
    spans = re.findall(r"`(issuer [^`]+)`", page)
    for block in re.findall(r"```[a-z]*\n(.*?)```", page, re.S):
        spans += [line for line in block.splitlines() if line.startswith("issuer ")]
    return spans


def _command_of(words: list[str]) -> tuple[tuple[str, ...], click.Command] | None:
    command: click.Command = issuer_cli
    path: list[str] = []
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    return (tuple(path), command) if path else None


def _option_names(command: click.Command) -> set[str]:
    return {n for p in command.params if isinstance(p, click.Option)
            for n in [*p.opts, *p.secondary_opts]}


#: Documented once for every command in docs/cli.md, "Conventions".
EVERY_COMMAND = {"--config", "--help", "-h"}


def test_cli_page_and_help_agree_both_ways() -> None:
    """Every option docs/cli.md shows for a command is one its --help lists, and every option
    its --help lists is shown in docs/cli.md beside that command (commands added later too)."""
    documented: dict[tuple[str, ...], set[str]] = {}
    for usage in _cli_page_usages():
        found = _command_of(usage.split()[1:])
        assert found is not None, f"docs/cli.md shows an unknown command: {usage}"
        path, command = found
        options = set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", usage.split(maxsplit=len(path))[-1]))
        unknown = options - _option_names(command) - EVERY_COMMAND
        assert not unknown, f"docs/cli.md: `{usage}` shows {sorted(unknown)}, which " \
                            f"`issuer {' '.join(path)} --help` does not list"
        documented.setdefault(path, set()).update(options)
    for path in all_commands():
        command = _command_of(list(path))
        assert command is not None
        if isinstance(command[1], click.Group):
            continue
        for param in command[1].params:
            if not isinstance(param, click.Option):
                continue
            names = {*param.opts, *param.secondary_opts}
            if names & EVERY_COMMAND:
                continue
            assert names & documented.get(path, set()), \
                f"`issuer {' '.join(path)}` takes {'/'.join(sorted(names))}: document it in docs/cli.md"


def test_nothing_cites_a_document_outside_the_repository() -> None:
    """Users have the docs/ pages and the RFCs; an internal specification's section names
    mean nothing to them, in code, messages, tests or docs."""
    pattern = re.compile(r"\b" + "SP" + r"EC\b")
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("templates/*.toml")]
    for folder in ("issuer", "tests", "examples", "bench"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml")]
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in files
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders, offenders
