"""The storage layer on both engines (SQLite file, PostgreSQL): the same records, one
gap-free log shared by several replicas, numbered forward-only migrations, clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from issuer.core.authority import Authority, init_issuer
from issuer.core.checks import audit_verify
from issuer.core.clock import FixedClock
from issuer.core.errors import AuditUnavailable, UnusableDatabase
from issuer.core.statements import MintRequest
from issuer.log.tlog import verify_log
from issuer.store.migrations import MIGRATIONS
from tests.conftest import START, Cli, assert_one_line_error, home_on, verified_statements

REQUEST = MintRequest("desktop-agent", {"software_version": "1.0"})


def replica(home: Path) -> Authority:
    return Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))


def test_records_log_and_revocation_on_each_engine(engine_home: Path) -> None:
    auth = replica(engine_home)
    minted = auth.mint_many([REQUEST] * 5, principal="ci", channel="cli")
    auth.set_status(minted[0].jti, "revoked", "leaked", actor="admin", channel="cli")
    auth.tokens.create("pipeline", role="minter", templates=["desktop-agent"], rate_limit=None,
                       actor="admin", channel="cli", now=START)
    record = auth.audit.statement(minted[0].jti)
    assert record.revocation_reason == "leaked" and record.claims["jti"] == minted[0].jti
    assert auth.audit.statement(minted[1].digest).jti == minted[1].jti
    assert [r.jti for r in auth.audit.statements()] == [m.jti for m in minted]
    report = verify_log(auth.log)
    assert report.entries == auth.audit.next_index()
    assert [e.idx for e in auth.audit.events()] == list(range(report.entries))
    assert verified_statements(auth) == 5
    assert auth.status.status_of(minted[0].jti) == 1
    auth.close()


def test_the_jwks_follows_key_events_another_replica_commits(engine_home: Path) -> None:
    """The keyring is checked against the logged key events on either engine: a key another
    replica generates is served once its event commits, and audit's keyring check agrees."""
    first, second = replica(engine_home), replica(engine_home)
    before = first.keys.stamp()
    assert first.keys.keyring_problems() == []
    key = second.keys.generate(actor="admin", channel="cli")
    assert first.keys.stamp() != before
    assert key.kid in {k["kid"] for k in first.jwks()["keys"]}
    assert first.keys.keyring_problems() == []  # the new next key; the one it superseded
    assert len(first.keystore.keys()) == 3
    first.close()
    second.close()


def test_audit_verify_checks_every_table_on_each_engine(engine_home: Path) -> None:
    """The named checks run on either engine: all pass, then an un-revoked row is named."""
    auth = replica(engine_home)
    minted = auth.mint_many([REQUEST] * 2, principal="ci", channel="cli")
    auth.set_status(minted[0].jti, "revoked", "leaked", actor="admin", channel="cli")
    assert verified_statements(auth) == 2
    auth.audit.conn.execute("UPDATE statements SET status = 0, revoked_at = NULL, "
                            "revocation_reason = NULL WHERE jti = ?", (minted[0].jti,))
    problems = audit_verify(auth).problems()
    assert problems and all(minted[0].jti in p for p in problems), problems
    auth.close()


def test_an_empty_database_is_refused_not_initialised(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Only init creates the schema: another command on an empty PostgreSQL database is one
    line that says how to restore."""
    url = request.getfixturevalue("postgres").database()
    home = tmp_path / "issuer"
    init_issuer(home, issuer="https://issuer.example.com", alg="ES256", actor="t", env={},
                clock=FixedClock(START), database=url).close()
    config = home / "issuer.toml"
    config.write_text(config.read_text().replace(url, request.getfixturevalue("postgres")
                                                 .database()))
    with pytest.raises(UnusableDatabase, match="holds no issuer database"):
        replica(home).audit


def test_migrations_are_numbered_and_forward_only(engine_home: Path) -> None:
    auth = replica(engine_home)
    conn = auth.audit.conn
    assert conn.schema_version() == len(MIGRATIONS)
    auth.close()
    again = replica(engine_home)  # reopening runs nothing twice
    assert again.audit.opened_at_version == len(MIGRATIONS)
    again.audit.conn.set_schema_version(len(MIGRATIONS) + 1)  # written by a newer issuer
    again.close()
    with pytest.raises(UnusableDatabase, match="newer than this issuer's"):
        replica(engine_home).audit


def test_replicas_share_one_gap_free_log(engine_home: Path) -> None:
    """Four writers in two replicas (separate stores, separate connections) mint at once:
    the log stays contiguous, every status index and jti is used once, the tree recomputes."""
    replicas = [replica(engine_home), replica(engine_home)]
    for each in replicas:
        each.audit  # opened before the threads share it  # noqa: B018
    errors: list[BaseException] = []

    def mint(auth: Authority) -> None:
        try:
            for _ in range(6):
                auth.mint_many([REQUEST] * 3, principal="ci", channel="http")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=mint, args=(r,)) for r in replicas for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    auth = replicas[0]
    records = auth.audit.statements()
    assert len(records) == 4 * 6 * 3
    assert len({r.jti for r in records}) == len(records)
    entries = [(r.claims["status"]["status_list"]["uri"], r.claims["status"]["status_list"]["idx"])
               for r in records]
    assert len(set(entries)) == len(entries)
    assert [e.idx for e in auth.audit.events()] == list(range(auth.audit.next_index()))
    assert verify_log(auth.log).entries == auth.audit.next_index()
    assert verified_statements(auth) == len(records)
    for each in replicas:
        each.close()


def test_a_database_rolled_back_behind_a_replica_is_refused(engine_home: Path) -> None:
    """A replica that has seen the log at N refuses to continue a database holding fewer
    entries (restored from an old copy, failed over to a stale standby)."""
    auth = replica(engine_home)
    auth.mint_many([REQUEST] * 2, principal="ci", channel="cli")
    seen = auth.audit.next_index()
    other = replica(engine_home)  # what a restore would do, written from another connection
    with other.audit.transaction():
        other.audit.conn.execute("DELETE FROM statements")
        other.audit.conn.execute("DELETE FROM events WHERE idx >= ?", (seen - 2,))
        other.audit.conn.execute("UPDATE log_sequencer SET next_idx = ? WHERE id = 0",
                                 (seen - 2,))
    other.close()
    with pytest.raises(AuditUnavailable, match=f"holds {seen - 2} log entries but this "
                                               f"process has seen {seen}"):
        auth.mint(REQUEST, principal="ci", channel="cli")
    with pytest.raises(AuditUnavailable, match="rolled back"):
        auth.audit.check_head()
    auth.close()


def test_an_unreachable_database_is_one_line_without_the_password(
        cli: Cli, postgres: object) -> None:
    closed = "postgresql://issuer:s3cret-pw@127.0.0.1:9/issuer"
    result = cli("audit", "list", env={"ISSUER_DATABASE": closed})
    assert_one_line_error(result, 1, "cannot open the issuer database",
                          "postgresql://issuer:***@127.0.0.1:9/issuer")
    assert "s3cret-pw" not in result.stderr
    missing = postgres.url("no_such_db").replace("postgres@", "postgres:s3cret-pw@")  # type: ignore[attr-defined]
    result = cli("audit", "list", env={"ISSUER_DATABASE": missing})
    assert_one_line_error(result, 1, "no_such_db", "does not exist")
    assert "s3cret-pw" not in result.stderr


def test_a_snapshot_sees_one_state_while_another_replica_writes(engine_home: Path) -> None:
    reader, writer = replica(engine_home), replica(engine_home)
    writer.mint(REQUEST, principal="ci", channel="cli")
    with reader.audit.snapshot():
        before = reader.audit.count_statements()
        size = len(reader.audit.entries(0, 1 << 30))
        writer.mint(REQUEST, principal="ci", channel="cli")
        assert reader.audit.count_statements() == before
        assert len(reader.audit.entries(0, 1 << 30)) == size
        assert verify_log(reader.log).entries == size
    assert reader.audit.count_statements() == before + 1
    reader.close()
    writer.close()


def test_a_transaction_with_a_failed_statement_is_not_reported_committed(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Even if a caller swallowed the error of one statement, COMMIT must not pass for a
    transaction PostgreSQL rolled back (it answers such a COMMIT with ROLLBACK, no error)."""
    auth = replica(home_on("postgresql", request, tmp_path))
    conn = auth.audit.conn
    with pytest.raises(AuditUnavailable, match="rolled back"):
        with auth.audit.transaction():
            conn.execute("INSERT INTO rate_limits (key, tat_ms) VALUES ('k', 1)")
            try:
                conn.execute("INSERT INTO log_sequencer (id, next_idx) VALUES (0, 0)")
            except AuditUnavailable:
                pass  # the swallowed error
    assert conn.execute("SELECT COUNT(*) FROM rate_limits").fetchone()[0] == 0
    auth.close()


def test_init_refuses_a_database_that_holds_an_issuer(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    home = home_on("postgresql", request, tmp_path)
    url = str(replica(home).config.database)
    from click.testing import CliRunner

    runner = Cli(tmp_path / "second", CliRunner())
    result = runner("init", "--dir", str(tmp_path / "second"), "--database", url, config=False)
    assert_one_line_error(result, 1, "already holds an issuer's records")
    assert not (tmp_path / "second" / "issuer.toml").exists()  # nothing half-made
