"""The audit records (docs/audit.md): every field of every statement, key and template events, queries, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import canonical_json
from issuer.core.errors import AuditUnavailable, NotFound, UnusableDatabase
from issuer.core.statements import MintRequest
from issuer.store.audit import StatementRecord
from tests.conftest import START, Cli, assert_one_line_error


def test_record_holds_every_spec_field(auth: Authority) -> None:
    result = auth.mint(MintRequest("mcp-connector", {"software_version": "1.4.2"}),
                       principal="release-bot", channel="http")
    record = auth.audit.statement(result.jti)
    template = auth.templates.load("mcp-connector")
    assert record.jti == result.jti and record.digest == result.digest
    assert record.iss == "https://issuer.example.com"
    assert record.kid == auth.keystore.active().kid and record.alg == "ES256"
    assert record.template == "mcp-connector" and record.template_digest == template.digest
    assert record.software_id == template.claims["software_id"]
    assert record.software_version == "1.4.2"
    assert record.claims["software_version"] == "1.4.2" and record.claims["jti"] == result.jti
    assert record.mint_values == {"software_version": "1.4.2"}
    assert (record.iat, record.exp) == (result.iat, result.exp)
    assert (record.principal, record.channel) == ("release-bot", "http")
    assert record.log_index == result.log_index
    assert record.revoked_at is None and record.revocation_reason is None
    assert record.software_statement == result.software_statement
    assert auth.audit.statement(result.digest) == record
    assert auth.audit.statement(result.digest.upper()) == record
    event = auth.audit.events()[record.log_index]
    assert event.type == "statement.issued" and event.subject == result.jti
    assert event.data["digest"] == result.digest and event.data["claims"] == record.claims


def test_events_are_gapless_and_in_order(auth: Authority) -> None:
    for version in ("1", "2", "3"):
        auth.mint(MintRequest("desktop-agent", {"software_version": version}), principal="a",
                  channel="cli")
    events = auth.audit.events()
    assert [e.idx for e in events] == list(range(len(events)))
    assert [e.type for e in events] == ["log.key_generated", "key.generated", "key.generated",
                                        "template.recorded", "status_list.created",
                                        "statement.issued", "statement.issued",
                                        "statement.issued"]


@pytest.mark.sqlite_only
def test_database_is_wal_and_durable(auth: Authority) -> None:
    conn = auth.audit.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_filters(auth: Authority, clock: FixedClock) -> None:
    auth.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="a",
              channel="cli")
    clock.advance(86400 * 10)
    auth.mint(MintRequest("workflow-runner", {"software_version": "2"}), principal="a",
              channel="cli")
    assert [r.template for r in auth.audit.statements(template="desktop-agent")] == [
        "desktop-agent"]
    runner_id = auth.templates.load("workflow-runner").claims["software_id"]
    assert [r.software_version for r in auth.audit.statements(software_id=runner_id)] == ["2"]
    assert [r.software_version for r in auth.audit.statements(since=START + 86400)] == ["2"]
    kid = auth.keystore.active().kid
    assert len(auth.audit.statements(kid=kid)) == 2
    assert auth.audit.statements(kid="other") == []
    first = auth.audit.statements(limit=1)
    assert len(first) == 1
    assert [r.software_version for r in auth.audit.statements(after_index=first[0].log_index)] == ["2"]


def test_unknown_statement(auth: Authority) -> None:
    with pytest.raises(NotFound, match="no statement with jti 'nope'"):
        auth.audit.statement("nope")
    with pytest.raises(NotFound, match="no statement with digest"):
        auth.audit.statement("ab" * 32)


@pytest.mark.sqlite_only
def test_unusable_database_is_a_clear_error(home: Path) -> None:
    (home / "issuer.db").unlink()
    for suffix in ("-wal", "-shm"):
        (home / f"issuer.db{suffix}").unlink(missing_ok=True)
    (home / "issuer.db").write_bytes(b"this is not a database" * 100)
    auth = Authority.from_config(home / "issuer.toml", env={})
    with pytest.raises(UnusableDatabase, match="cannot open the issuer database"):
        auth.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="a",
                  channel="cli")


def test_audit_cli(cli: Cli) -> None:
    token = cli("mint", "desktop-agent", "--set", "software_version=5.0", "--json").stdout
    minted = json.loads(token)
    listed = cli("audit", "list")
    assert listed.exit_code == 0 and minted["jti"] in listed.stdout and "desktop-agent" in listed.stdout
    as_json = json.loads(cli("audit", "list", "--json", "--template", "desktop-agent").stdout)
    assert [r["jti"] for r in as_json] == [minted["jti"]]
    assert json.loads(cli("audit", "list", "--json", "--template", "mcp-connector").stdout) == []
    assert json.loads(cli("audit", "list", "--json", "--since", "1d").stdout)[0]["jti"] == minted["jti"]
    assert json.loads(cli("audit", "list", "--json", "--since", "2999-01-01").stdout) == []
    shown = json.loads(cli("audit", "show", minted["digest"], "--json").stdout)
    assert shown["jti"] == minted["jti"] and shown["principal"] and shown["channel"] == "cli"
    text = cli("audit", "show", minted["jti"]).stdout
    assert f"digest:              {minted['digest']}" in text
    assert_one_line_error(cli("audit", "show", "missing"), 1, "no statement with jti 'missing'")
    assert_one_line_error(cli("audit", "list", "--since", "yesterday"), 2, "--since")
    exported = cli("audit", "export", "--format", "jsonl")
    events = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["idx"] for e in events] == list(range(len(events)))
    assert {"key.generated", "template.recorded", "statement.issued"} <= {e["type"] for e in events}
    assert all(set(e) == {"idx", "time", "type", "actor", "channel", "subject", "data"}
               for e in events)


@pytest.mark.sqlite_only
def test_export_and_records_carry_no_private_key(cli: Cli, home: Path) -> None:
    cli("mint", "desktop-agent", "--set", "software_version=1")
    dump = "\n".join(sqlite3.connect(home / "issuer.db").iterdump())
    exported = cli("audit", "export").stdout
    for text in (dump, exported):
        assert "PRIVATE KEY" not in text
        assert '"d":' not in text


def test_template_history_cli(cli: Cli, home: Path) -> None:
    assert "no recorded versions" in cli("templates", "history", "desktop-agent").stdout
    cli("mint", "desktop-agent", "--set", "software_version=1")
    path = home / "templates" / "desktop-agent.toml"
    path.write_text(path.read_text().replace('scope = "openid profile files.read"',
                                             'scope = "openid profile files.read files.write"'))
    cli("mint", "desktop-agent", "--set", "software_version=2")
    text = cli("templates", "history", "desktop-agent").stdout
    assert "template.recorded" in text and "template.changed" in text
    assert "claims.scope: 'openid profile files.read' -> 'openid profile files.read files.write'" in text
    events = json.loads(cli("templates", "history", "desktop-agent", "--json").stdout)
    assert events[1]["data"]["changes"][0]["path"] == "claims.scope"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(claims=st.dictionaries(st.text(), _json_values, max_size=6),
       nested=st.dictionaries(st.sampled_from(["digest", "claims", "alg", "x"]) | st.text(),
                              _json_values, max_size=4),
       publisher=st.booleans(), strings=st.lists(st.text(), min_size=8, max_size=8))
def test_spliced_entry_is_the_canonical_encoding(claims: dict[str, object],
                                                 nested: dict[str, object], publisher: bool,
                                                 strings: list[str]) -> None:
    """Minting encodes the claims once and splices them into the log entry: the entry must be
    byte for byte the canonical encoding of the whole record, whatever the values hold
    (quotes, commas, member names like "digest" in nested objects, non-ASCII)."""
    jti, digest, alg, channel, principal, template, kid, version = strings
    record = StatementRecord(
        jti=jti, digest=digest, iss="https://i.example", kid=kid, alg=alg, template=template,
        template_digest=digest, software_id=None, software_version=version, claims=claims,
        mint_values=nested, iat=1, exp=2, principal=principal, channel=channel,
        software_statement="a.b.c", publisher="gh" if publisher else None,
        ci_claims=nested if publisher else None, claims_json=canonical_json(claims))
    assert record.event_text().encode("utf-8") == canonical_json(record.event_data())
