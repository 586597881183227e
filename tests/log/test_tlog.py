"""The issuance transparency log: leaves, checkpoints, proofs, tamper detection, HTTP."""

from __future__ import annotations

import base64
import json
import sqlite3
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import canonical_json
from issuer.core.errors import IssuerError, NotFound, UnusableDatabase
from issuer.core.statements import MintRequest
from issuer.log import merkle
from issuer.log.note import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
)
from issuer.log.tlog import (
    LogVerificationError,
    verify_consistency_offline,
    verify_inclusion_offline,
    verify_leaf_inclusion_offline,
    verify_log,
)
from issuer.service.app import create_app
from tests.conftest import START, Cli, assert_one_line_error

COLUMNS = ["idx", "time", "type", "actor", "channel", "subject", "data"]


def mint_some(auth: Authority, n: int) -> list[str]:
    return [auth.mint(MintRequest("desktop-agent", {"software_version": f"1.{i}"}),
                      principal="ci", channel="http").jti for i in range(n)]


def db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "issuer.db")


def reopen(home: Path) -> Authority:
    return Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))


def test_leaf_bytes_are_the_canonical_json_of_the_event(auth: Authority) -> None:
    auth.mint(MintRequest("mcp-connector", {"software_version": "ünïcode ✓"}), principal="ci",
              channel="cli")
    for event in auth.audit.events():
        assert auth.audit.entry(event.idx) == canonical_json(event.as_dict())
    assert "ünïcode ✓".encode() in auth.audit.entry(auth.audit.next_index() - 1)


def test_every_transaction_is_checkpointed_and_signed(auth: Authority) -> None:
    before = auth.log.latest()[0].size
    mint_some(auth, 3)
    head, note = auth.log.latest()
    assert head.size == before + 3 + 2  # + the template's first use and the first status list
    assert head.size == auth.audit.next_index()
    verifier = NoteVerifier.from_key(auth.log.verifier.verifier_key())
    opened = open_note(note, [verifier])
    assert parse_checkpoint(opened.text).root_hash == merkle.root(auth.log.store, head.size)
    assert verifier.name == "issuer.example.com/issuance-log" == head.origin
    auth.mint_many([MintRequest("desktop-agent", {"software_version": "b"})] * 5,
                   principal="ci", channel="cli")
    sizes = [r[0] for r in auth.audit.conn.execute(
        "SELECT tree_size FROM log_checkpoints ORDER BY tree_size")]
    assert sizes[-2:] == [head.size, head.size + 5]  # one checkpoint for the whole batch


def test_inclusion_and_consistency_proofs_verify_offline(auth: Authority) -> None:
    jtis = mint_some(auth, 12)
    key = auth.log.verifier.verifier_key()
    old_size, old_note = auth.log.latest()[0].size, auth.log.latest()[1]
    for jti in jtis:
        record = auth.audit.statement(jti)
        proof = auth.log.inclusion(record.log_index, auth.audit.entry(record.log_index))
        head = verify_inclusion_offline(proof.checkpoint, key, proof.entry, proof.log_index,
                                        list(proof.hashes))
        assert head.size == auth.audit.next_index()
        with pytest.raises(LogVerificationError):
            verify_inclusion_offline(proof.checkpoint, key, proof.entry + b" ", proof.log_index,
                                     list(proof.hashes))
    mint_some(auth, 5)
    new_size, new_note = auth.log.latest()[0].size, auth.log.latest()[1]
    proof = auth.log.consistency(old_size, new_size)
    verify_consistency_offline(old_note, new_note, key, proof)
    with pytest.raises(LogVerificationError):
        verify_consistency_offline(old_note, new_note, key, proof[:-1])
    with pytest.raises(IssuerError):
        auth.log.consistency(0, new_size)


def test_clean_log_verifies(auth: Authority, cli: Cli, tmp_path: Path) -> None:
    mint_some(auth, 4)
    report = verify_log(auth.log)
    assert report.entries == report.tree_size == auth.audit.next_index()
    kept = tmp_path / "checkpoint.txt"
    ok = cli("audit", "verify", "--save-checkpoint", str(kept))
    assert ok.exit_code == 0, ok.stderr
    assert "every table match the log" in ok.stdout
    mint_some(auth, 2)
    again = cli("audit", "verify", "--checkpoint", str(kept), "--json")
    assert again.exit_code == 0, again.stderr
    body = json.loads(again.stdout)
    assert set(body) == {"ok", "checks", "entries", "checkpoints_compared", "tree_size",
                         "root_hash", "consistent_with"}
    assert body["consistent_with"] == [parse_checkpoint(
        kept.read_text().split("\n\n")[0] + "\n").size]
    # What an auditor compares with the checkpoint it keeps: the recomputed size and root.
    head = auth.log.latest()[0]
    compared = auth.audit.conn.execute("SELECT COUNT(*) FROM log_checkpoints").fetchone()[0]
    assert (body["entries"], body["tree_size"], body["root_hash"], body["checkpoints_compared"]
            ) == (head.size, head.size, base64.b64encode(head.root_hash).decode(), compared)


def test_kept_checkpoints_are_checked_in_size_order_whatever_order_they_come_in(
        auth: Authority) -> None:
    kept = []
    for _ in range(3):
        mint_some(auth, 2)
        kept.append(auth.log.latest())
    sizes = [head.size for head, _ in kept]
    report = verify_log(auth.log, [note for _, note in reversed(kept)])
    assert report.consistent_with == sizes and report.tree_size == sizes[-1]


def test_kept_checkpoints_of_the_first_trees(auth: Authority) -> None:
    """Every log extends the empty tree, so a kept checkpoint of size 0 claims nothing to check;
    one of size 1 is compared like any other."""
    signer = auth.keystore.log_signer()
    mint_some(auth, 1)
    kept = [sign_checkpoint(signer, Checkpoint(auth.log.origin, size,
                                               merkle.root(auth.log.store, size)))
            for size in (0, 1)]
    assert verify_log(auth.log, kept).consistent_with == [1]


def test_proofs_at_the_edges_of_the_tree(auth: Authority) -> None:
    mint_some(auth, 2)
    head, note = auth.log.latest()
    key = auth.log.verifier.verifier_key()
    # The first entry has a proof like any other.
    proof = auth.log.inclusion(0, auth.audit.entry(0))
    assert (proof.log_index, proof.tree_size, proof.checkpoint) == (0, head.size, note)
    assert verify_inclusion_offline(proof.checkpoint, key, proof.entry, 0,
                                    list(proof.hashes)).size == head.size
    # An index at the tree size is not in the tree: NotFound (404), not a failed assertion.
    with pytest.raises(NotFound, match="not in the tree"):
        auth.log.inclusion(head.size, b"")
    # first == second is allowed (docs/http-api.md): SUBPROOF(m, D_m, true) is empty
    # (RFC 9162 section 2.1.4.1), and the two equal checkpoints verify with it.
    assert auth.log.consistency(head.size, head.size) == []
    verify_consistency_offline(note, note, key, [])


def test_offline_verification_pins_the_origin_to_the_log_key_name() -> None:
    """A checkpoint is the log's only when its origin line is the log key's name (C2SP
    tlog-checkpoint): the log key signing a checkpoint of another origin proves nothing here."""
    signer = NoteSigner("issuer.example.com/issuance-log", bytes(range(32)))
    key, other = signer.verifier_key(), "elsewhere.example/issuance-log"
    store, size = merkle.MemoryNodeStore(), 0
    entries = [f"entry {i}".encode() for i in range(5)]
    for entry in entries:
        size = merkle.append(store, size, entry)

    def signed(origin: str, tree_size: int) -> str:
        return sign_checkpoint(signer, Checkpoint(origin, tree_size, merkle.root(store, tree_size)))

    consistency = merkle.consistency_proof(store, 3, 5)
    inclusion = merkle.inclusion_proof(store, 2, 5)
    verify_consistency_offline(signed(signer.name, 3), signed(signer.name, 5), key, consistency)
    verify_inclusion_offline(signed(signer.name, 5), key, entries[2], 2, inclusion)
    for old, new in ((other, signer.name), (signer.name, other)):
        with pytest.raises(LogVerificationError, match="is not the expected"):
            verify_consistency_offline(signed(old, 3), signed(new, 5), key, consistency)
    with pytest.raises(LogVerificationError, match="is not the expected"):
        verify_inclusion_offline(signed(other, 5), key, entries[2], 2, inclusion)
    with pytest.raises(LogVerificationError, match="is not the expected"):
        verify_leaf_inclusion_offline(signed(other, 5), key, merkle.leaf_hash(entries[2]), 2,
                                      inclusion)


@pytest.fixture
def logged(home: Path) -> Path:
    """A home with 6 statements; the statements sit at log entries 4..9."""
    auth = reopen(home)
    mint_some(auth, 6)
    auth.close()
    return home


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("idx", [0, 4, 9])
def test_editing_any_column_of_any_entry_is_caught(logged: Path, cli: Cli, column: str,
                                                   idx: int) -> None:
    conn = db(logged)
    if column == "idx":
        conn.execute("UPDATE events SET idx = 1000 WHERE idx = ?", (idx,))
    elif column in ("time",):
        conn.execute("UPDATE events SET time = time + 1 WHERE idx = ?", (idx,))
    elif column == "data":
        conn.execute("UPDATE events SET data = replace(data, '\"', '\"') || '' WHERE idx = ?", (idx,))
        conn.execute("UPDATE events SET data = substr(data, 1, length(data) - 1) || ',\"x\":1}' "
                     "WHERE idx = ?", (idx,))
    else:
        conn.execute(f"UPDATE events SET {column} = {column} || 'x' WHERE idx = ?", (idx,))
    conn.commit()
    result = cli("audit", "verify")
    assert_one_line_error(result, 1, f"entry {idx}")


def test_deleting_an_entry_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    conn.execute("DELETE FROM events WHERE idx = 6")
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, "entry 6 is missing")


def test_deleting_the_last_entry_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    last = conn.execute("SELECT MAX(idx) FROM events").fetchone()[0]
    conn.execute("DELETE FROM statements WHERE log_index = ?", (last,))
    conn.execute("DELETE FROM events WHERE idx = ?", (last,))
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1,
                          f"the log has leaves past entry {last - 1} whose entries were deleted")


def test_swapping_two_entries_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    a = conn.execute("SELECT time, type, actor, channel, subject, data FROM events WHERE idx = 5").fetchone()
    b = conn.execute("SELECT time, type, actor, channel, subject, data FROM events WHERE idx = 7").fetchone()
    for idx, row in ((5, b), (7, a)):
        conn.execute("UPDATE events SET time=?, type=?, actor=?, channel=?, subject=?, data=? "
                     "WHERE idx = ?", (*row, idx))
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, "entry 5 was edited")


def test_inserting_an_entry_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    size = conn.execute("SELECT MAX(idx) + 1 FROM events").fetchone()[0]
    conn.execute("INSERT INTO events VALUES (?, 1, 'statement.issued', 'mallory', 'cli', 'x', '{}')",
                 (size,))
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, f"entry {size} was added outside the log")


def test_renumbering_to_insert_in_the_middle_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    conn.execute("UPDATE events SET idx = idx + 1000 WHERE idx >= 5")
    conn.execute("UPDATE events SET idx = idx - 999 WHERE idx >= 1005")
    conn.execute("INSERT INTO events VALUES (5, 1, 'statement.issued', 'mallory', 'cli', 'x', '{}')")
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, "entry 5 was edited")


def test_editing_a_statement_record_is_caught(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    conn.execute("UPDATE statements SET software_version = '6.6.6' WHERE log_index = 6")
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, "column 'software_version' differs")


@pytest.mark.parametrize("idx", [0, 7])  # 0: before the first checkpoint, blamed from 0
def test_rewriting_entries_and_leaf_hashes_without_the_key_is_caught(logged: Path, cli: Cli,
                                                                     idx: int) -> None:
    """Edit an entry and recompute every stored hash consistently: only the signed
    checkpoints, which need the log key, still tell."""
    conn = db(logged)
    sizes = [size for (size,) in conn.execute("SELECT tree_size FROM log_checkpoints")]
    signed_at = min(size for size in sizes if size > idx)  # the first checkpoint covering idx
    before = max([size for size in sizes if size <= idx], default=0)
    conn.execute("UPDATE events SET actor = 'mallory' WHERE idx = ?", (idx,))
    rows = conn.execute("SELECT idx, time, type, actor, channel, subject, data FROM events "
                        "ORDER BY idx").fetchall()
    conn.execute("DELETE FROM log_nodes")
    store = merkle.MemoryNodeStore()
    from issuer.log.tlog import entry_bytes

    for size, row in enumerate(rows):
        merkle.append(store, size, entry_bytes(*row))
    conn.executemany("INSERT INTO log_nodes VALUES (?, ?, ?)",
                     [(lvl, i, h) for (lvl, i), h in store.nodes.items()])
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1,
                          f"entries {before}..{signed_at - 1} do not match the checkpoint signed "
                          f"at tree size {signed_at}: the first bad index is at or after {before}",
                          f"first bad index is at or after {idx}")


def test_wholesale_rewrite_with_the_log_key_fails_an_old_checkpoint(logged: Path, cli: Cli,
                                                                     tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    assert cli("audit", "verify", "--save-checkpoint", str(kept)).exit_code == 0
    # Someone holding the database and the keys rebuilds the whole history differently...
    for name in ("issuer.db", "issuer.db-wal", "issuer.db-shm", "keys/log-checkpoint"):
        (logged / name).unlink(missing_ok=True)
    auth = reopen(logged)
    auth.create_database()
    mint_some(auth, 3)
    auth.mint(MintRequest("mcp-connector", {"software_version": "9"}), principal="mallory",
              channel="cli")
    mint_some(auth, 6)
    auth.close()
    # The log is internally consistent and freshly signed; only the keyring, whose keys no
    # key event of the rewritten history logs, gives it away...
    assert_one_line_error(cli("audit", "verify"), 1, "no key event logs it")
    # ...and a checkpoint kept earlier does.
    result = cli("audit", "verify", "--checkpoint", str(kept))
    assert_one_line_error(result, 1, "not consistent with the checkpoint")


def test_a_damaged_log_is_never_rebuilt_silently(logged: Path, cli: Cli) -> None:
    conn = db(logged)
    conn.execute("DELETE FROM log_nodes")
    conn.execute("DELETE FROM log_checkpoints")
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1)
    assert_one_line_error(cli("mint", "desktop-agent", "--set", "software_version=1"), 1,
                          "refusing the database", "no signed checkpoint")


def test_cli_proof(cli: Cli, auth: Authority) -> None:
    [jti] = mint_some(auth, 1)
    record = auth.audit.statement(jti)
    out = json.loads(cli("audit", "proof", record.digest, "--json").stdout)
    assert out["log_index"] == record.log_index and out["jti"] == jti
    verify_inclusion_offline(out["checkpoint"], out["log_key"], out["entry"].encode(),
                             out["log_index"], [base64.b64decode(h) for h in out["inclusion_proof"]])
    shown = cli("audit", "proof", jti)
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout
    assert f"is entry {record.log_index} of the log" in text and "issuance-log" in text
    assert_one_line_error(cli("audit", "proof", "nope"), 1, "no statement")
    assert_one_line_error(cli("audit", "proof", jti, "--tree-size", "1"), 1, "not in the tree")


# --- HTTP -----------------------------------------------------------------------------------------


def test_log_endpoints(auth: Authority) -> None:
    client = TestClient(create_app(auth, jwks_recheck=0), raise_server_exceptions=False)
    _, secret = auth.tokens.create("audit", role="auditor", templates=[], rate_limit=None,
                                   actor="t", channel="cli", now=auth.now())
    jtis = mint_some(auth, 3)
    key = client.get("/v1/log/key").text.strip()
    note = client.get("/v1/log/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    head = parse_checkpoint(open_note(note.text, [NoteVerifier.from_key(key)]).text)
    record = auth.audit.statement(jtis[1])
    by_digest = client.get("/v1/log/proof/inclusion", params={"digest": record.digest}).json()
    by_jti = client.get("/v1/log/proof/inclusion", params={"jti": record.jti}).json()
    assert by_digest == by_jti and by_digest["log_index"] == record.log_index
    # The public sees hashes and the statement it names, never the audit entry: not who
    # minted it ("ci") nor the mint-time values (docs/transparency-log.md, "What is public").
    assert set(by_digest) == {"log_index", "tree_size", "leaf_hash", "inclusion_proof",
                              "checkpoint", "jti", "digest"}
    assert '"ci"' not in json.dumps(by_digest) and "1.1" not in json.dumps(by_digest)
    verify_leaf_inclusion_offline(by_digest["checkpoint"], key,
                                  base64.b64decode(by_digest["leaf_hash"]), by_digest["log_index"],
                                  [base64.b64decode(h) for h in by_digest["inclusion_proof"]])
    # An auditor gets the entry behind that leaf, and it names the statement.
    [audited] = client.get("/v1/log/entries", params={"start": record.log_index,
                                                      "end": record.log_index + 1},
                           headers={"Authorization": f"Bearer {secret}"}).json()["entries"]
    assert audited["leaf_hash"] == by_digest["leaf_hash"]
    assert json.loads(audited["entry"])["data"]["digest"] == record.digest
    verify_inclusion_offline(by_digest["checkpoint"], key, audited["entry"].encode(),
                             by_digest["log_index"],
                             [base64.b64decode(h) for h in by_digest["inclusion_proof"]])
    with pytest.raises(LogVerificationError):
        verify_leaf_inclusion_offline(by_digest["checkpoint"], key, b"\0" * 32,
                                      by_digest["log_index"],
                                      [base64.b64decode(h) for h in by_digest["inclusion_proof"]])
    first = auth.audit.conn.execute("SELECT MIN(tree_size) FROM log_checkpoints").fetchone()[0]
    consistency = client.get("/v1/log/proof/consistency",
                             params={"first": first, "second": head.size}).json()
    verify_consistency_offline(auth.log.note_at(first), note.text, key,
                               [base64.b64decode(h) for h in consistency["consistency_proof"]])
    entries = client.get("/v1/log/entries", params={"start": 0, "end": head.size},
                         headers={"Authorization": f"Bearer {secret}"}).json()
    frontier = merkle.CompactRange()
    for item in entries["entries"]:
        frontier.append(merkle.leaf_hash(item["entry"].encode()))
    assert frontier.root() == head.root_hash  # an independent recomputation from the API alone
    assert client.get("/v1/log/entries").status_code == 401
    for params in ({}, {"digest": "ab" * 32}, {"digest": "x", "jti": "y"}):
        r = client.get("/v1/log/proof/inclusion", params=params)
        assert r.status_code in (400, 404) and "error" in r.json()
    for params in ({"first": 0, "second": 1}, {"first": 5, "second": 2},
                   {"first": 1, "second": 10 ** 6}, {"first": "x", "second": 2}):
        assert client.get("/v1/log/proof/consistency", params=params).status_code == 400
    doc = client.get("/.well-known/software-statement-issuer").json()
    assert doc["transparency_log"]["origin"] == head.origin


def test_mint_response_carries_the_log_index(auth: Authority) -> None:
    result = auth.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="p",
                       channel="cli")
    assert auth.audit.entry(result.log_index) == canonical_json(
        auth.audit.events()[result.log_index].as_dict())
    assert json.loads(auth.audit.entry(result.log_index))["data"]["digest"] == result.digest


def test_two_writers_interleave(home: Path) -> None:
    """Each writer keeps the tree's right edge in memory; it must notice the other's appends."""
    first, second = reopen(home), reopen(home)
    for _ in range(7):
        mint_some(first, 1)
        mint_some(second, 2)
    report = verify_log(first.log)
    assert report.entries == first.audit.next_index() == second.audit.next_index()
    key = first.log.verifier.verifier_key()
    for record in first.audit.statements():
        proof = second.log.inclusion(record.log_index, second.audit.entry(record.log_index))
        verify_inclusion_offline(proof.checkpoint, key, proof.entry, proof.log_index,
                                 list(proof.hashes))
    first.close()
    second.close()


def test_a_rolled_back_append_leaves_no_trace(auth: Authority,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from issuer.log.tlog import TransparencyLog

    mint_some(auth, 2)
    real = TransparencyLog.checkpoint

    def broken(self: TransparencyLog, time: int) -> str:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(TransparencyLog, "checkpoint", broken)
    with pytest.raises(IssuerError):
        mint_some(auth, 3)  # leaves were appended in memory, then the transaction rolled back
    monkeypatch.setattr(TransparencyLog, "checkpoint", real)
    mint_some(auth, 2)
    assert verify_log(auth.log).entries == auth.audit.next_index()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_entry_strings_match_the_json_encoder(value: str) -> None:
    from issuer.log.tlog import _string

    assert _string(value) == json.dumps(value, ensure_ascii=False).encode("utf-8")


def test_a_stored_checkpoint_with_a_bad_signature_is_refused(auth: Authority, home: Path) -> None:
    """The log opens its own stored checkpoints with the log key, not on trust."""
    mint_some(auth, 2)
    auth.close()
    conn = db(home)
    size, note = conn.execute("SELECT tree_size, note FROM log_checkpoints ORDER BY tree_size "
                              "DESC LIMIT 1").fetchone()
    lines = note.split("\n")
    lines[2] = base64.b64encode(b"\x00" * 32).decode()  # another root, the old signature
    conn.execute("UPDATE log_checkpoints SET note = ? WHERE tree_size = ?",
                 ("\n".join(lines), size))
    conn.commit()
    conn.close()
    reopened = reopen(home)
    # Refused as the database opens: its newest checkpoint is not the log key's signature.
    with pytest.raises(UnusableDatabase, match="does not verify with the log key"):
        reopened.log.latest()
    reopened.close()


def test_a_stored_checkpoint_of_another_origin_is_refused(auth: Authority, home: Path) -> None:
    """Signed with the log key but for another log (a staging copy sharing the key, say): the
    log pins its origin when it opens its stored checkpoints, not only the signature."""
    mint_some(auth, 2)
    head, _ = auth.log.latest()
    forged = sign_checkpoint(auth.keystore.log_signer(), Checkpoint(
        origin="staging.example.com/issuance-log", size=head.size, root_hash=head.root_hash))
    assert open_note(forged, [auth.log.verifier]).text.startswith("staging.example.com/")
    with pytest.raises(LogVerificationError, match="^checkpoint does not verify with the log "
                                                   "key: .*origin"):
        auth.log.open(forged)
    auth.close()
    conn = db(home)
    conn.execute("UPDATE log_checkpoints SET note = ? WHERE tree_size = ?", (forged, head.size))
    conn.commit()
    conn.close()
    reopened = reopen(home)
    with pytest.raises(UnusableDatabase, match="not this issuer's: its newest checkpoint does "
                                               "not verify with the log key and origin"):
        reopened.log.latest()
    reopened.close()


def test_an_empty_log_has_no_checkpoint_to_give(home: Path) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE log_checkpoints (tree_size INTEGER PRIMARY KEY, "
                       "root_hash BLOB, note TEXT, time INTEGER)")
    auth = reopen(home)
    from issuer.log.tlog import TransparencyLog
    empty = TransparencyLog(conn, auth.keystore.log_signer, auth.log.verifier)
    with pytest.raises(NotFound, match="^the log has no checkpoint yet$"):
        empty.latest()
    auth.close()


def test_only_a_signed_checkpoint_reaches_the_high_water_mark(auth: Authority) -> None:
    """A transaction that signed no checkpoint (a token, a template) hands nothing to
    ``on_commit``; one that did hands over exactly the note it signed, once committed."""
    seen: list[str] = []
    mark = auth.log.on_commit
    auth.log.on_commit = seen.append
    auth.log.begin()
    auth.log.end(committed=True)
    assert seen == []
    mint_some(auth, 1)
    assert seen == [auth.log.latest()[1]]
    auth.log.on_commit = mark
