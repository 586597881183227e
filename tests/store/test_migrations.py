"""Numbered migrations that only ever add, and a database made by the first released version
(schema 4, commit 1294903) opened and upgraded by this one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner

from issuer.core.authority import Authority
from issuer.store.migrations import FIRST_RELEASED_VERSION, MIGRATIONS
from tests.conftest import Cli, assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
FIRST_RELEASE = "1294903"
#: SHA-256 of each released migration's text: a released migration is never edited.
RELEASED = (
    "94b3ef6ba8f57d438cd7fe7c4878d54aecd2f8546a41d46afffa6c8e7aaf3ee6",
    "a051cc93bb95ea3d340e2e733c0ceff5fc7187a500c7156bf025c31b9edbaa7b",
    "ba0bca4f7a3837f9a6028dd8ca68d807501da6657516c236847c8dab9f8e3941",
    "fcda3da422355a1b30b088f6061c1c772915dfc4413aeca85676cabb1bd63c2f",
    "bca376a6ba75070af56b2785d33e1b20bfd7bf3638abc9d8810fb86a7d86c211",
    "0af40e3a75ccdf676ff6501ceb07d35bc057e3745d726888c020932f3fa716c5",
)


def test_released_migrations_are_never_edited() -> None:
    assert len(MIGRATIONS) >= len(RELEASED)
    for number, (script, digest) in enumerate(zip(MIGRATIONS, RELEASED), start=1):
        assert hashlib.sha256(script.encode()).hexdigest() == digest, f"migration {number}"
    for script in MIGRATIONS:
        code = "\n".join(line.split("--")[0] for line in script.splitlines())
        statements = [s.strip().split()[0].upper() for s in code.split(";") if s.strip()]
        assert set(statements) <= {"CREATE", "ALTER", "INSERT"}, statements


def released_package(tmp_path: Path) -> Path:
    """The issuer package as released, from git history (no key or database is committed)."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", FIRST_RELEASE, "issuer",
                                  "templates"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history of commit {FIRST_RELEASE} (a clone, not an sdist)")
    target = tmp_path / "released"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="tar")
    return target


def test_a_database_of_the_first_release_is_upgraded(tmp_path: Path) -> None:
    package = released_package(tmp_path)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    env["PYTHONPATH"] = str(package)

    def released(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "issuer", *args], cwd=tmp_path, env=env,
                                input=stdin, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    released("init", "--dir", str(home), "--issuer", "https://issuer.example.com")
    config = str(home / "issuer.toml")
    kept = json.loads(released("mint", "desktop-agent", "--set", "software_version=1", "--json",
                               "--config", config))
    gone = json.loads(released("mint", "desktop-agent", "--set", "software_version=2", "--json",
                               "--config", config))
    released("revoke", gone["jti"], "--reason", "pulled", "--config", config)
    secret = json.loads(released("tokens", "create", "ci", "--role", "minter", "--template",
                                 "desktop-agent", "--json", "--config", config))["token"]
    assert (home / "issuer.db").stat().st_mode & 0o077  # the first release made it 0644
    assert not (home / "keys" / "log-checkpoint").exists()

    cli = Cli(home, CliRunner())
    assert cli("verify", "-", input=kept["software_statement"]).exit_code == 0
    assert_one_line_error(cli("verify", "-", input=gone["software_statement"]), 1, "revoked")
    verified = cli("audit", "verify")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert (home / "issuer.db").stat().st_mode & 0o777 == 0o600
    assert (home / "keys" / "log-checkpoint").exists()
    auth = Authority.from_config(home / "issuer.toml", env={})
    try:
        assert auth.audit.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert auth.tokens.authenticate(secret).name == "ci"
        types = [e.type for e in auth.audit.events()]
        assert types.count("token.recorded") == 1 and types.count("status_list.recorded") == 1
    finally:
        auth.close()
    assert cli("mint", "desktop-agent", "--set", "software_version=3").exit_code == 0
    assert cli("doctor").exit_code == 0
    assert cli("audit", "verify").exit_code == 0


@pytest.mark.sqlite_only
def test_a_schema_older_than_the_first_release_is_refused(cli: Cli) -> None:
    import sqlite3

    conn = sqlite3.connect(cli.home / "issuer.db")
    conn.execute(f"PRAGMA user_version = {FIRST_RELEASED_VERSION - 1}")
    conn.commit()
    conn.close()
    assert_one_line_error(cli("audit", "list"), 1, "before the first release")
