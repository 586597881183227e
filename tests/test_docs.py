"""Docs that stay true: every command is documented, every documented command exists."""

from __future__ import annotations

import re
from pathlib import Path

from .test_cli import all_commands

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
