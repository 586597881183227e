"""One core, two thin fronts: only the CLI imports click, only the service imports fastapi,
and the RFC 7591 rules live in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "issuer"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_only_the_cli_imports_click() -> None:
    users = {p.name for p in modules() if "click" in imports(p)}
    assert users <= {"cli.py"}, users


def test_only_the_service_imports_fastapi() -> None:
    users = {p.relative_to(PACKAGE).as_posix() for p in modules()
             if {"fastapi", "starlette", "uvicorn"} & imports(p)}
    assert all(u.startswith("service") for u in users), users


def test_rfc7591_registry_lives_in_one_module() -> None:
    """Names of the metadata rules appear only in metadata.py (and the docs)."""
    markers = ("private_key_jwt", "client_secret_basic", "authorization_code")
    offenders = [p.name for p in modules() if p.name != "metadata.py"
                 and any(f'"{m}"' in p.read_text() for m in markers)]
    assert offenders == [], offenders
