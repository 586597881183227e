"""The package layout's import directions (docs/architecture.md): one core, two thin fronts, and
a verifier for authorization servers that imports nothing of the issuing side."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "issuer"

#: Protocol modules both sides share: formats and rules, no state, no I/O of their own.
SHARED = {"issuer.core.errors", "issuer.core.clock", "issuer.core.encoding",
          "issuer.core.metadata", "issuer.status.statuslist"}
#: The fronts: the command line, `make run`'s demo, `python -m issuer`.
FRONTS = ("issuer.cli", "issuer.demo", "issuer.__main__")
#: What the verifier may import from outside the standard library.
VERIFIER_THIRD_PARTY = {"joserfc", "cryptography", "httpx"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


@cache
def imports(module: str) -> frozenset[str]:
    """Every module ``module`` imports, at the top or inside a function (``from issuer.x
    import y`` counts as ``issuer.x.y`` when that is a module)."""
    tree = ast.parse(modules()[module].read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, node)
            submodules = {f"{base}.{a.name}" for a in node.names} & modules().keys()
            names |= submodules or {base}
    return frozenset(names)


def internal(module: str) -> set[str]:
    return {name for name in imports(module) if name in modules()}


def top_level(module: str) -> set[str]:
    return {name.split(".")[0] for name in imports(module)}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_only_the_cli_imports_click() -> None:
    users = {m for m in modules() if "click" in top_level(m)}
    assert users and all(in_package(m, "issuer.cli") for m in users), users


def test_only_the_service_imports_fastapi() -> None:
    users = {m for m in modules() if {"fastapi", "starlette", "uvicorn"} & top_level(m)}
    assert users and all(in_package(m, "issuer.service") for m in users), users


def test_only_the_web_view_and_metrics_import_jinja2_and_prometheus() -> None:
    pages = {m for m in modules() if "jinja2" in top_level(m)}
    assert pages == {"issuer.service.web.routes"}, pages
    metrics = {m for m in modules() if "prometheus_client" in top_level(m)}
    assert metrics == {"issuer.service.metrics"}, metrics


def test_the_fronts_are_on_top() -> None:
    """Nothing below the fronts imports them; only the fronts start the service."""
    for module in modules():
        for name in internal(module):
            if in_package(name, "issuer.cli"):
                assert any(in_package(module, f) for f in FRONTS), module
            if in_package(name, "issuer.service"):
                assert any(in_package(module, f) for f in ("issuer.service", *FRONTS)), \
                    (module, name)


def test_the_verifier_imports_nothing_of_the_issuing_side() -> None:
    for module in modules():
        if not in_package(module, "issuer.verifier"):
            continue
        outside = {n for n in internal(module)
                   if not in_package(n, "issuer.verifier") and n not in SHARED | {"issuer"}}
        assert outside == set(), (module, outside)
        third = top_level(module) - set(sys.stdlib_module_names) - {"issuer", "__future__"}
        allowed = VERIFIER_THIRD_PARTY | ({"authlib"} if module == "issuer.verifier.authlib"
                                          else set())
        assert third <= allowed, (module, third)


def test_shared_modules_import_only_each_other() -> None:
    for module in SHARED:
        assert internal(module) - {"issuer"} <= SHARED, (module, internal(module))
        third = top_level(module) - set(sys.stdlib_module_names) - {"issuer", "__future__"}
        assert third == set(), (module, third)


def test_lower_layers_do_not_import_the_authority() -> None:
    """keys, store, log and status sit below the authority that composes them."""
    for module in modules():
        if any(in_package(module, f"issuer.{p}") for p in ("keys", "store", "log", "status")):
            above = {n for n in internal(module)
                     if n == "issuer.core.authority" or in_package(n, "issuer.verifier")
                     and not in_package(module, "issuer.status")}
            assert above == set(), (module, above)


def test_no_import_cycles() -> None:
    """Between modules, counting imports inside functions too (a deferred import is still a
    dependency: remote and verify used to import each other that way)."""
    graph = {m: {n for n in internal(m) if n != "issuer" and not modules()[n].name == "__init__.py"}
             for m in modules()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_importing_the_verifier_loads_no_issuer_side_dependency() -> None:
    """What an authorization server imports pulls in no web framework, CLI or database layer."""
    code = ("import sys, issuer.verifier, issuer.verifier.remote, issuer.verifier.jwks; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                text=True, cwd=ROOT).stdout.split())
    assert "joserfc" in loaded
    assert loaded.isdisjoint({"fastapi", "starlette", "uvicorn", "click", "sqlalchemy",
                              "psycopg", "sqlite3"}), loaded


def test_rfc7591_registry_lives_in_one_module() -> None:
    """Names of the metadata rules appear only in core/metadata.py (and the docs)."""
    markers = ("private_key_jwt", "client_secret_basic", "authorization_code")
    offenders = [m for m, p in modules().items() if m != "issuer.core.metadata"
                 and any(f'"{marker}"' in p.read_text() for marker in markers)]
    assert offenders == [], offenders


#: Key backends and the optional client library only each may import (docs/keys.md).
BACKEND_LIBRARIES = {"issuer.keys.backends.pkcs11": {"pkcs11"},
                     "issuer.keys.backends.awskms": {"boto3", "botocore"}}


def test_backend_client_libraries_stay_in_their_backend_module() -> None:
    """python-pkcs11 and boto3 are optional extras: only their backend module imports them,
    and no module imports a backend module (the registry loads it by the configured scheme)."""
    for module in modules():
        for backend, libraries in BACKEND_LIBRARIES.items():
            if module != backend:
                assert not libraries & top_level(module), (module, libraries)
                assert backend not in internal(module), (module, backend)


def test_a_file_keyed_issuer_loads_no_backend_library() -> None:
    code = ("import sys, issuer.cli, issuer.service.app; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                text=True, cwd=ROOT).stdout.split())
    assert "issuer" in loaded and loaded.isdisjoint({"pkcs11", "boto3", "botocore"}), loaded
