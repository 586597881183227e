"""`issuer doctor`, `serve` refusing what doctor refuses, and `issuer backup` / `restore`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import Cli, assert_one_line_error, installed_issuer


def mint(cli: Cli, version: str = "1") -> dict[str, str]:
    result = cli("mint", "desktop-agent", "--set", f"software_version={version}", "--json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_doctor_passes_on_a_fresh_issuer(cli: Cli) -> None:
    result = cli("doctor")
    assert result.exit_code == 0, result.stdout + result.stderr
    for name in ("keys", "database file", "identity and high-water mark", "file modes"):
        assert f"ok    {name}" in result.stdout
    assert json.loads(cli("doctor", "--json").stdout)["ok"] is True


def test_doctor_names_every_problem(cli: Cli) -> None:
    os.chmod(cli.home / "issuer.db", 0o644)
    active = next(p for p in (cli.home / "keys").glob("*.pem") if p.name != "log.pem")
    keyring = json.loads((cli.home / "keys" / "keyring.json").read_text())
    kid = next(k["kid"] for k in keyring["keys"] if k["state"] == "active")
    pem = cli.home / "keys" / f"{kid}.pem"
    assert pem.exists(), active
    pem.write_text("not a key")
    result = cli("doctor")
    assert_one_line_error(result, 1, "doctor found problems")
    assert "FAIL  keys" in result.stdout and kid in result.stdout
    assert "FAIL  file modes" in result.stdout and "mode 0644" in result.stdout


def test_doctor_reports_a_missing_database_without_a_traceback(cli: Cli) -> None:
    (cli.home / "issuer.db").unlink()
    result = cli("doctor")
    assert_one_line_error(result, 1, "no issuer database at")
    assert not (cli.home / "issuer.db").exists()


def corrupt(path: Path) -> None:
    """Overwrite pages in the middle of the file, as a bad disk would."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for offset in range(2 * page + 100, len(data) - page, page):
        data[offset:offset + 200] = os.urandom(200)
    path.write_bytes(bytes(data))


def test_a_damaged_database_fails_audit_verify_doctor_and_serve(cli: Cli) -> None:
    for i in range(30):
        mint(cli, str(i))
    corrupt(cli.home / "issuer.db")
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "ok:" not in result.stdout
    assert "FAIL  database file" in result.stdout
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "FAIL  database file" in doctor.stdout
    served = subprocess.run([installed_issuer(), "serve", "--config", str(cli.home / "issuer.toml"),
                             "--port", "1"], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("ISSUER_")})
    assert served.returncode == 1, served.stderr
    assert served.stderr.startswith("issuer: error: ") and "Traceback" not in served.stderr
    assert len(served.stderr.strip().splitlines()) == 1


def test_backup_and_restore_drill(cli: Cli, tmp_path: Path) -> None:
    kept = mint(cli, "1")
    copy = tmp_path / "backup.db"
    result = cli("backup", str(copy))
    assert result.exit_code == 0, result.stderr
    assert copy.stat().st_mode & 0o777 == 0o600
    assert_one_line_error(cli("backup", str(copy)), 1, "exists")
    # The disk is lost.
    for suffix in ("", "-wal", "-shm"):
        (cli.home / f"issuer.db{suffix}").unlink(missing_ok=True)
    assert_one_line_error(cli("audit", "list"), 1, "no issuer database")
    assert cli("restore", str(copy)).exit_code == 0
    assert cli("audit", "verify").exit_code == 0
    assert cli("verify", "-", input=kept["software_statement"]).exit_code == 0
    assert cli("doctor").exit_code == 0
    mint(cli, "2")


def test_restoring_an_older_backup_loses_entries_only_when_accepted(cli: Cli,
                                                                     tmp_path: Path) -> None:
    mint(cli, "1")
    copy = tmp_path / "backup.db"
    assert cli("backup", str(copy)).exit_code == 0
    later = mint(cli, "2")
    assert cli("revoke", later["jti"], "--reason", "bad").exit_code == 0
    refused = cli("restore", str(copy))
    assert_one_line_error(refused, 1, "restoring it loses", "--accept-loss")
    assert cli("audit", "show", later["jti"]).exit_code == 0  # nothing was changed
    accepted = cli("restore", str(copy), "--accept-loss")
    assert accepted.exit_code == 0, accepted.stderr
    assert "log entries newer than the backup are lost" in accepted.stderr
    assert cli("audit", "verify").exit_code == 0
    events = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    assert events[-1]["type"] == "log.restored" and events[-1]["data"]["lost_entries"] > 0


def test_a_foreign_or_tampered_backup_is_not_restored(cli: Cli, tmp_path: Path) -> None:
    mint(cli)
    copy = tmp_path / "backup.db"
    assert cli("backup", str(copy)).exit_code == 0
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE api_tokens SET revoked_at = NULL")
    conn.execute("DELETE FROM statements")
    conn.commit()
    conn.close()
    assert_one_line_error(cli("restore", str(copy)), 1, "the backup fails audit verify")
    assert cli("audit", "verify").exit_code == 0
