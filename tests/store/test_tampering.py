"""An attacker with write access to issuer.db (not to the keys) edits it with sqlite3: every
change to what a verifier or an auditor depends on is refused or named by `audit verify`."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.encoding import canonical_json
from issuer.service.app import create_app
from tests.conftest import Cli, assert_one_line_error

#: Edits the SQLite file itself (the same checks run on PostgreSQL in tests/store/test_engines.py).
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def db(cli: Cli) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(cli.home / "issuer.db", isolation_level=None)
    yield conn
    conn.close()


def mint(cli: Cli, version: str = "1") -> dict[str, str]:
    result = cli("mint", "desktop-agent", "--set", f"software_version={version}", "--json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def verify_fails(cli: Cli, *fragments: str) -> str:
    result = cli("audit", "verify")
    assert_one_line_error(result, 1, "audit verify failed")
    for fragment in fragments:
        assert fragment in result.stdout, (fragment, result.stdout)
    return result.stdout


# --- 1. statements: every issuance has its row ---------------------------------------------------


def test_deleting_a_revoked_statements_row_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    minted = mint(cli)
    assert cli("revoke", minted["jti"], "--reason", "malware").exit_code == 0
    assert cli("verify", "-", input=minted["software_statement"]).exit_code == 1
    assert cli("audit", "verify").exit_code == 0
    db.execute("DELETE FROM statements WHERE jti = ?", (minted["jti"],))
    out = verify_fails(cli, f"statement {minted['jti']}", "has no record row: it was deleted",
                       "FAIL  statements", "FAIL  status_lists")
    assert "allocation counter" in out  # the list now counts one statement fewer


def test_inserting_a_statements_row_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    mint(cli)
    db.execute("INSERT INTO statements SELECT 'forged', 'ab' || digest, iss, kid, alg, template, "
               "template_digest, software_id, software_version, iat, exp, principal, channel, "
               "log_index - 1, NULL, NULL, NULL, NULL, 0, NULL, NULL FROM statements")
    verify_fails(cli, "statement forged", "not its issuance")


# --- 2. state outside the log ---------------------------------------------------------------------


def token(cli: Cli, name: str, *args: str) -> str:
    result = cli("tokens", "create", name, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["token"])


def test_unrevoking_an_api_token_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    secret = token(cli, "ops", "--role", "admin")
    assert cli("tokens", "revoke", "ops").exit_code == 0
    db.execute("UPDATE api_tokens SET revoked_at = NULL WHERE name = 'ops'")
    verify_fails(cli, "API token 'ops': revoked_at differs from the log")
    auth = Authority.from_config(cli.home / "issuer.toml", env={})
    client = TestClient(create_app(auth, jwks_recheck=0))
    r = client.get("/v1/statements", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and "audit log" in r.json()["error_description"]
    auth.close()


def test_inserting_or_rekeying_an_admin_token_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    token(cli, "reader", "--role", "auditor")
    mine = token(cli, "mine", "--role", "auditor")  # the attacker learns a hash they control
    row = db.execute("SELECT token_id, secret_hash FROM api_tokens WHERE name = 'mine'").fetchone()
    db.execute("INSERT INTO api_tokens (name, token_id, secret_hash, role, templates, created_at,"
               " created_by) SELECT 'root', 'AAAAAAAAAAAA', secret_hash, 'admin', '[]', "
               "created_at, 'admin' FROM api_tokens WHERE name = 'mine'")
    db.execute("UPDATE api_tokens SET role = 'admin', token_id = 'BBBBBBBBBBBB' "
               "WHERE name = 'mine'")
    db.execute("UPDATE api_tokens SET token_id = ?, secret_hash = ? WHERE name = 'reader'", row)
    verify_fails(cli, "API token 'root' was never logged as created",
                 "API token 'reader': its credential", "API token 'mine': role differs")
    auth = Authority.from_config(cli.home / "issuer.toml", env={})
    client = TestClient(create_app(auth, jwks_recheck=0))
    for presented in (mine, "ssi_AAAAAAAAAAAA." + mine.split(".")[1],
                      "ssi_BBBBBBBBBBBB." + mine.split(".")[1]):
        r = client.get("/v1/statements", headers={"Authorization": f"Bearer {presented}"})
        assert r.status_code == 401, r.text
    auth.close()


def test_deleting_an_api_token_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    token(cli, "ci", "--role", "minter", "--template", "desktop-agent")
    db.execute("DELETE FROM api_tokens")
    verify_fails(cli, "API token 'ci' is logged but has no row")


def test_rewriting_template_versions_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    mint(cli)
    path = cli.home / "templates" / "desktop-agent.toml"
    path.write_text(path.read_text().replace('lifetime = "90d"', 'lifetime = "30d"'))
    show = json.loads(cli("templates", "show", "desktop-agent", "--json").stdout)
    # The attacker records the new version as if it were the logged one: the change is hidden.
    content = json.loads(db.execute("SELECT content FROM template_versions").fetchone()[0])
    content["lifetime"] = "30d"
    db.execute("UPDATE template_versions SET digest = ?, content = ?",
               (show["digest"], canonical_json(content).decode()))
    verify_fails(cli, "template version desktop-agent", "digest differs from the logged one",
                 "content differs from the logged one")


def test_deleting_template_versions_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    mint(cli)
    db.execute("DELETE FROM template_versions")
    verify_fails(cli, "template version desktop-agent (log entry", "has no row: it was deleted")


def test_rewinding_a_status_lists_counter_is_refused_and_caught(cli: Cli,
                                                                db: sqlite3.Connection) -> None:
    mint(cli)
    mint(cli, "2")
    db.execute("UPDATE status_lists SET next_counter = 0")
    verify_fails(cli, "allocation counter is 0 but 2 statements were issued from it")
    # A mint would reuse an index handed out before: the issuer refuses instead.
    result = cli("mint", "desktop-agent", "--set", "software_version=3")
    assert result.exit_code == 1 and "UNIQUE" in result.stderr, result.stderr
    assert db.execute("SELECT COUNT(*) FROM statements").fetchone()[0] == 2


def test_changing_a_status_lists_bits_or_key_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    mint(cli)
    db.execute("UPDATE status_lists SET bits = 1, prp_key = zeroblob(32)")
    verify_fails(cli, "bits differs from the log", "permutation key differs")


def test_inserting_a_status_list_is_caught(cli: Cli, db: sqlite3.Connection) -> None:
    mint(cli)
    db.execute("INSERT INTO status_lists SELECT 'forged', bits, size, prp_key, 0, 0, created_at "
               "FROM status_lists")
    verify_fails(cli, "status list forged was never logged as created")


def test_every_check_is_named_when_all_is_well(cli: Cli) -> None:
    mint(cli)
    token(cli, "ci", "--role", "minter", "--template", "desktop-agent")
    result = cli("audit", "verify", "--json")
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names == ["database file", "log", "identity and high-water mark", "statements",
                     "template_versions", "api_tokens", "status_lists", "keyring"]
    assert all(c["ok"] and c["checked"] >= 1 for c in report["checks"])


# --- 3. a truncated log tail ----------------------------------------------------------------------


def truncate(db: sqlite3.Connection, size: int) -> None:
    """Drop every entry from ``size`` on, the tree nodes over them and the newer checkpoints:
    the older checkpoints still sign what is left (no key needed)."""
    db.execute("DELETE FROM events WHERE idx >= ?", (size,))
    for level in range(40):
        db.execute("DELETE FROM log_nodes WHERE level = ? AND (idx + 1) * ? > ?",
                   (level, 1 << level, size))
    db.execute("DELETE FROM log_checkpoints WHERE tree_size > ?", (size,))


def test_truncating_a_revocation_off_the_log_is_refused(cli: Cli, db: sqlite3.Connection) -> None:
    minted = mint(cli)
    size = db.execute("SELECT MAX(tree_size) FROM log_checkpoints").fetchone()[0]
    assert cli("revoke", minted["jti"], "--reason", "malware").exit_code == 0
    truncate(db, size)
    db.execute("UPDATE statements SET status = 0, revoked_at = NULL, revocation_reason = NULL")
    db.execute("UPDATE status_lists SET version = 0")
    for args in (("verify", "-"), ("audit", "list"),
                 ("mint", "desktop-agent", "--set", "software_version=2")):
        assert_one_line_error(cli(*args, input=minted["software_statement"]), 1,
                              "the log was truncated", f"tree size {size + 1}")
    result = cli("audit", "verify")
    assert_one_line_error(result, 1, "the log was truncated")
    assert "ok    log" in result.stdout  # what is left is internally consistent


def test_the_high_water_mark_moves_with_every_checkpoint(cli: Cli, db: sqlite3.Connection) -> None:
    mark = cli.home / "keys" / "log-checkpoint"
    before = mark.read_text()
    mint(cli)
    after = mark.read_text()
    newest = db.execute("SELECT note FROM log_checkpoints ORDER BY tree_size DESC").fetchone()[0]
    assert after == newest and after != before
    assert mark.stat().st_mode & 0o777 == 0o600


def test_a_damaged_high_water_mark_is_named(cli: Cli) -> None:
    (cli.home / "keys" / "log-checkpoint").write_text("")
    assert_one_line_error(cli("audit", "list"), 1, "high-water mark", "is damaged")


