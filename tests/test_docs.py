"""Docs that stay true: every command is documented, every documented command exists."""

from __future__ import annotations

import re
from pathlib import Path

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
