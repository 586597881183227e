"""Only `issuer init` creates a database; a missing, empty or foreign one is refused."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from issuer.core.authority import init_issuer
from issuer.core.clock import FixedClock
from tests.conftest import START, Cli, assert_one_line_error

#: Removes, empties or swaps the SQLite file (on PostgreSQL, an empty database: test_engines.py).
pytestmark = pytest.mark.sqlite_only

COMMANDS = [("verify", "-"), ("audit", "list"), ("audit", "verify"), ("tokens", "list"),
            ("mint", "desktop-agent", "--set", "software_version=1"), ("keys", "list")]


def _drop_database(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"issuer.db{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_missing_database_is_refused_not_recreated(cli: Cli, args: tuple[str, ...]) -> None:
    token = cli("mint", "desktop-agent", "--set", "software_version=1").stdout.strip()
    _drop_database(cli.home)
    result = cli(*args, input=token + "\n")
    assert_one_line_error(result, 1, "no issuer database at", "issuer init",
                          "restore it from a backup")
    assert not (cli.home / "issuer.db").exists()


def test_empty_database_is_refused(cli: Cli) -> None:
    _drop_database(cli.home)
    (cli.home / "issuer.db").write_bytes(b"")
    assert_one_line_error(cli("audit", "list"), 1, "is empty", "restore it from a backup")
    assert (cli.home / "issuer.db").stat().st_size == 0


def test_database_without_schema_is_refused(cli: Cli) -> None:
    import sqlite3

    _drop_database(cli.home)
    sqlite3.connect(cli.home / "issuer.db").execute("CREATE TABLE unrelated (x)").connection.commit()
    assert_one_line_error(cli("audit", "list"), 1, "holds no issuer database")


def test_another_issuers_database_is_refused(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_issuer(other, issuer="https://issuer.example.com", alg="ES256", actor="t", env={},
                clock=FixedClock(START)).close()
    before = (cli.home / "keys" / "log-checkpoint").read_bytes()
    _drop_database(cli.home)
    for suffix in ("", "-wal", "-shm"):
        if (other / f"issuer.db{suffix}").exists():
            shutil.copy(other / f"issuer.db{suffix}", cli.home / f"issuer.db{suffix}")
    result = cli("audit", "list")
    assert_one_line_error(result, 1, "not this issuer's")
    assert (cli.home / "keys" / "log-checkpoint").read_bytes() == before


def test_another_issuer_url_is_refused(cli: Cli) -> None:
    config = cli.home / "issuer.toml"
    config.write_text(config.read_text().replace("https://issuer.example.com",
                                                 "https://other.example.com"))
    assert_one_line_error(cli("audit", "list"), 1, "not this issuer's",
                          "other.example.com/issuance-log")


def test_missing_log_key_is_refused_not_replaced(cli: Cli) -> None:
    for name in ("log.pem", "log.json"):
        (cli.home / "keys" / name).unlink()
    assert_one_line_error(cli("audit", "list"), 1, "log key is missing")
    assert not (cli.home / "keys" / "log.json").exists()


def test_init_creates_the_database_0600(tmp_path: Path) -> None:
    home = tmp_path / "h"
    init_issuer(home, issuer="https://issuer.example.com", alg="ES256", actor="t", env={},
                clock=FixedClock(START)).close()
    for name in ("issuer.db", "issuer.db-wal", "issuer.db-shm"):
        if (home / name).exists():
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
