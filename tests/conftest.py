"""Shared fixtures: a fresh issuer home in tmp_path, a fixed clock, and a CLI runner."""

from __future__ import annotations

import http.server
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from issuer.core.authority import Authority, init_issuer
from issuer.core.clock import FixedClock

#: Published test vectors (sources in fixtures/vectors/README.md), copied unchanged.
VECTORS = Path(__file__).resolve().parent / "fixtures" / "vectors"
START = 1_790_000_000  # 2026-09-21T14:13:20Z


def vector(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's ISSUER_* environment."""
    import os

    for var in list(os.environ):
        if var.startswith("ISSUER_"):
            monkeypatch.delenv(var)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Each test starts from empty caches: the metadata URL rules, the origin rule, the log's
    JSON strings, the verifier's imported keys and passed payloads all remember answers, and
    under `make mutants` a cache filled before the fork would hide a mutated rule from every
    test."""
    from issuer.core import metadata
    from issuer.log import tlog
    from issuer.verifier import jose, remote, statement

    metadata._redirect_uri_problem.cache_clear()
    metadata._web_url_problem.cache_clear()
    remote.same_origin.cache_clear()
    tlog._quoted.cache_clear()
    jose._KEYS.clear()
    statement._METADATA_PASSED.clear()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised issuer home (ES256, the shipped templates)."""
    directory = tmp_path / "issuer"
    init_issuer(directory, issuer="https://issuer.example.com", alg="ES256",
                actor="tester", env={}, clock=FixedClock(START)).close()
    return directory


@pytest.fixture
def auth(home: Path, clock: FixedClock) -> Iterator[Authority]:
    authority = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    yield authority
    authority.close()


def write_template(home: Path, name: str, body: str) -> Path:
    path = home / "templates" / f"{name}.toml"
    path.write_text(body)
    return path


@dataclass
class Cli:
    """Runs `issuer` in-process against one home."""

    home: Path
    runner: CliRunner

    def __call__(self, *args: str, input: str | None = None, config: bool = True,
                 env: dict[str, str] | None = None) -> Result:
        from issuer.cli import cli

        argv = [*args, "--config", str(self.home / "issuer.toml")] if config else list(args)
        return self.runner.invoke(cli, argv, input=input, env=env, catch_exceptions=False)


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home, CliRunner())


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """docs/cli.md: one line on stderr, the right exit code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("issuer: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def installed_issuer() -> str:
    """The console script installed in this environment."""
    candidate = Path(sys.executable).parent / "issuer"
    return str(candidate) if candidate.exists() else (shutil.which("issuer") or "issuer")


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving files from a directory."""
    directory = tmp_path / "www"
    directory.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", directory
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole session (tests/postgres.py)."""
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.close()


def home_on(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """An initialised issuer home on a storage engine: a SQLite file, or a fresh database of
    the session's PostgreSQL cluster."""
    database = "issuer.db"
    if engine == "postgresql":
        database = request.getfixturevalue("postgres").database()
    directory = tmp_path / "issuer"
    init_issuer(directory, issuer="https://issuer.example.com", alg="ES256",
                actor="tester", env={}, clock=FixedClock(START), database=database).close()
    return directory


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """An initialised issuer home on each storage engine (one test per engine)."""
    return home_on(request.param, request, tmp_path)


def verified_statements(auth: Authority) -> int:
    """`audit verify` over ``auth`` passes every check; how many statement rows it compared."""
    from issuer.core.checks import audit_verify

    report = audit_verify(auth)
    assert report.ok, report.problems()
    return next(r.outcome.checked for r in report.results if r.name == "statements")
