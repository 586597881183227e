"""The issuer's state checked against its signed log (docs/audit.md, "What audit verify checks").

The log covers the ``events`` table: every entry is a leaf, and the signed checkpoints commit
to them all. Every other table a verifier's answer or an auditor's question depends on is a
copy of what the events say, and each check here compares one table with the events, both
ways: a row with no event (inserted), an event with no row (deleted), and a row that differs
from its event (edited), column by column. A check never stops at the first problem; it
reports up to :data:`MAX_PROBLEMS` of them, each naming the row.

| table | compared with |
|---|---|
| ``statements`` | its ``statement.issued`` entry; status and revocation columns with the logged changes |
| ``template_versions`` | its ``template.recorded`` / ``template.changed`` entry |
| ``api_tokens`` | ``token.created`` (its credential as a digest) and ``token.revoked`` |
| ``status_lists`` | ``status_list.created`` (its key as a digest); counter and version with the entries |
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from issuer.core.encoding import canonical_json
from issuer.store.audit import AuditStore

#: Problems reported per check; the count of the rest is still given.
MAX_PROBLEMS = 20
#: Status changes and the value each leaves in ``statements.status``.
STATUS_EVENTS = {"statement.revoked": 1, "statement.suspended": 2, "statement.unsuspended": 0}
#: Columns of a statements row that the ``statement.issued`` entry does not hold.
_NOT_ISSUED = ("log_index", "revoked_at", "revocation_reason", "status_list", "status_idx",
               "status")
STATUS_LIST_EVENTS = ("status_list.created", "status_list.recorded")
TEMPLATE_EVENTS = ("template.recorded", "template.changed")


def credential_digest(token_id: str, secret_hash: str) -> str:
    """What the log keeps of an API token's credential: enough to tell that the stored hash
    was swapped, nothing that helps guess the secret (256 random bits behind SHA-256)."""
    return hashlib.sha256(f"ssi-token\n{token_id}\n{secret_hash}".encode("ascii")).hexdigest()


def key_digest(key: bytes) -> str:
    """What the log keeps of a status list's permutation key (the key stays secret)."""
    return hashlib.sha256(b"ssi-status-key\n" + key).hexdigest()


def list_event(list_id: str, bits: int, size: int, key: bytes, created_at: int) -> dict[str, Any]:
    """What the log says of a status list: never its key, only a digest of it."""
    return {"id": list_id, "bits": bits, "size": size, "key_digest": key_digest(key),
            "created_at": created_at}


@dataclass
class Outcome:
    """What one check found: how many rows it compared, and the problems (the first few)."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    failures: int = 0

    def problem(self, text: str) -> None:
        self.failures += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(" ".join(text.split()))  # one line each

    @property
    def ok(self) -> bool:
        return self.failures == 0


Check = Callable[[AuditStore], Outcome]


def _rows(store: AuditStore, sql: str, params: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
    with store.lock:
        cursor = store.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        while batch := cursor.fetchmany(2048):
            for values in batch:
                yield dict(zip(names, values))


def _latest_by_subject(store: AuditStore, types: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The newest logged event of ``types`` per subject: its time and data."""
    marks = ",".join("?" * len(types))
    return {row["subject"]: {"time": row["time"], **json.loads(row["data"])}
            for row in _rows(store, f"SELECT subject, time, data FROM events WHERE type IN "
                                    f"({marks}) ORDER BY idx", types)}


def sqlite_integrity(store: AuditStore, *, quick: bool = False) -> Outcome:
    """SQLite's own check of the file: pages, indexes, constraints. A PostgreSQL server
    checks its own pages (data checksums), so there is nothing to check here."""
    outcome = Outcome()
    if store.conn.postgresql:
        return outcome
    pragma = "quick_check" if quick else "integrity_check"
    try:
        with store.lock:
            found = [str(row[0]) for row in store.conn.execute(f"PRAGMA {pragma}")]
    except Exception as exc:  # a damaged file fails the check itself
        outcome.problem(f"the database file is damaged: {exc}")
        return outcome
    outcome.checked = 1
    for line in found:
        if line != "ok":
            outcome.problem(f"the database file is damaged: {line}")
    return outcome


def check_statements(store: AuditStore) -> Outcome:
    """Every row equals the ``statement.issued`` entry it points at, its status and revocation
    columns the logged changes; every issuance entry has its row."""
    outcome = Outcome()
    revocations: dict[str, tuple[int, Any]] = {}
    statuses: dict[str, int] = {}
    for row in _rows(store, "SELECT subject, type, time, data FROM events WHERE type IN "
                            "('statement.revoked', 'statement.suspended', "
                            "'statement.unsuspended') ORDER BY idx"):
        statuses[row["subject"]] = STATUS_EVENTS[row["type"]]
        if row["type"] == "statement.revoked":
            revocations[row["subject"]] = (row["time"], json.loads(row["data"]).get("reason"))
    for row in _rows(store, "SELECT s.*, e.type AS e_type, e.subject AS e_subject, "
                            "e.data AS e_data FROM statements s LEFT JOIN events e "
                            "ON e.idx = s.log_index ORDER BY s.log_index"):
        kind, subject, data = row.pop("e_type"), row.pop("e_subject"), row.pop("e_data")
        where = f"statement {row['jti']} (log entry {row['log_index']})"
        outcome.checked += 1
        if kind != "statement.issued" or subject != row["jti"]:
            outcome.problem(f"{where}: the row points at an entry that is not its issuance "
                            "(an inserted or renumbered row)")
            continue
        for problem in _statement_problems(row, json.loads(data), statuses, revocations):
            outcome.problem(f"{where}: {problem}")
    for row in _rows(store, "SELECT e.idx, e.subject FROM events e LEFT JOIN statements s "
                            "ON s.log_index = e.idx WHERE e.type = 'statement.issued' "
                            "AND s.jti IS NULL ORDER BY e.idx"):
        outcome.problem(f"statement {row['subject']} (log entry {row['idx']}) has no record "
                        "row: it was deleted")
    return outcome


def _statement_problems(row: dict[str, Any], issued: dict[str, Any], statuses: dict[str, int],
                        revocations: dict[str, tuple[int, Any]]) -> Iterator[str]:
    ref = issued.get("claims", {}).get("status", {}).get("status_list", {})
    if (row["status_list"], row["status_idx"]) != (
            str(ref.get("uri", "")).rsplit("/", 1)[-1] or None, ref.get("idx")):
        yield "status list entry differs from the signed statement's"
    if row["status"] != statuses.get(row["jti"], 0):
        yield "status differs from its logged status changes"
    for column, value in row.items():
        if column not in _NOT_ISSUED and issued.get(column) != value:
            yield f"column '{column}' differs from the logged issuance"
    if (row["revoked_at"], row["revocation_reason"]) != revocations.get(row["jti"],
                                                                          (None, None)):
        yield "revoked_at/revocation_reason differ from its logged revocation"


def check_template_versions(store: AuditStore) -> Outcome:
    """Every recorded template version equals the template entry that introduced it."""
    outcome = Outcome()
    for row in _rows(store, "SELECT t.*, e.type AS e_type, e.subject AS e_subject, e.time AS "
                            "e_time, e.data AS e_data FROM template_versions t LEFT JOIN events "
                            "e ON e.idx = t.log_index ORDER BY t.log_index"):
        outcome.checked += 1
        where = f"template version {row['name']} (log entry {row['log_index']})"
        if row["e_type"] not in TEMPLATE_EVENTS or row["e_subject"] != row["name"]:
            outcome.problem(f"{where}: the row points at an entry that is not a template "
                            "change (an inserted row)")
            continue
        data = json.loads(row["e_data"])
        if row["digest"] != data.get("digest", data.get("new_digest")):
            outcome.problem(f"{where}: digest differs from the logged one")
        if row["content"] != canonical_json(data.get("content")).decode("utf-8"):
            outcome.problem(f"{where}: content differs from the logged one")
        if row["recorded_at"] != row["e_time"]:
            outcome.problem(f"{where}: recorded_at differs from the entry's time")
    for row in _rows(store, "SELECT e.idx, e.subject FROM events e LEFT JOIN template_versions "
                            "t ON t.log_index = e.idx WHERE e.type IN ('template.recorded', "
                            "'template.changed') AND t.name IS NULL ORDER BY e.idx"):
        outcome.problem(f"template version {row['subject']} (log entry {row['idx']}) has no "
                        "row: it was deleted")
    return outcome


#: Entries that change an API token, and the one that a CI token exchange makes.
TOKEN_CHANGES = ("token.created", "token.recorded", "token.rotated", "token.revoked")
_TOKEN_SQL = ("SELECT type, time, data FROM events WHERE (type IN ('token.created', "
              "'token.recorded', 'token.rotated', 'token.revoked') {and_subject}) OR "
              "(type = 'oidc.exchanged' {and_publisher}) ORDER BY idx")


def _replay_tokens(rows: Iterator[tuple[str, int, str]]) -> dict[str, dict[str, Any]]:
    """Each API token as its logged entries leave it: creation (with its credential digest),
    rotations (a new credential) and revocation."""
    tokens: dict[str, dict[str, Any]] = {}
    for kind, time, text in rows:
        data = json.loads(text)
        if kind == "oidc.exchanged":
            data = data.get("token", {})
            kind = "token.created"
        name = data.get("name")
        if kind in ("token.created", "token.recorded"):
            tokens[name] = dict(data)
        elif name in tokens and kind == "token.rotated":
            tokens[name].update(credential=data.get("credential"),
                                expires_at=data.get("expires_at"), rotated_at=time)
        elif name in tokens and kind == "token.revoked":
            tokens[name]["revoked_at"] = time
    return tokens


def logged_token(store: AuditStore, name: str) -> dict[str, Any] | None:
    """What the log says of API token ``name`` now (on the caller thread's reader: the
    service checks every request with it)."""
    sql = _TOKEN_SQL.format(and_subject="AND subject = ?", and_publisher="AND subject = ?")
    rows = store.read(sql, (name, name.split("@", 1)[0]))
    return _replay_tokens(iter([(r[0], r[1], r[2]) for r in rows])).get(name)


#: Token columns the log decides (``last_used_at`` is operational: it changes nothing a
#: record depends on, and is not logged).
_TOKEN_COLUMNS = ("role", "templates", "rate_limit", "created_at", "created_by", "revoked_at",
                  "expires_at", "rotated_at", "publisher")


def _matched(store: AuditStore, outcome: Outcome, sql: str, key: str,
             logged: dict[str, dict[str, Any]], label: Callable[[str], str]
             ) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """Each row of ``sql`` with what the log says of it (by ``key``); a row the log never
    created, and a logged one with no row, are problems."""
    seen = set()
    for row in _rows(store, sql):
        outcome.checked += 1
        seen.add(row[key])
        state = logged.get(row[key])
        if state is None:
            outcome.problem(f"{label(row[key])} was never logged as created (an inserted row)")
            continue
        yield row, state, label(row[key])
    for name in sorted(set(logged) - seen):
        outcome.problem(f"{label(name)} is logged but has no row: it was deleted")


def check_api_tokens(store: AuditStore) -> Outcome:
    """Every token row equals what its logged entries say (creation, role, templates, rate
    limit, expiry, rotation, revocation, credential); every logged token has its row."""
    outcome = Outcome()
    logged = _replay_tokens((r["type"], r["time"], r["data"]) for r in _rows(
        store, _TOKEN_SQL.format(and_subject="", and_publisher="")))
    for row, state, where in _matched(store, outcome, "SELECT * FROM api_tokens ORDER BY name",
                                      "name", logged, lambda name: f"API token '{name}'"):
        actual = {**row, "templates": _json_list(row["templates"])}
        for column in _TOKEN_COLUMNS:
            if actual.get(column) != state.get(column):
                outcome.problem(f"{where}: {column} differs from the log")
        if "origin" in state and _json_list(row["origin"] or "null") != state["origin"]:
            outcome.problem(f"{where}: origin differs from the log")
        if state.get("credential") != credential_digest(row["token_id"], row["secret_hash"]):
            outcome.problem(f"{where}: its credential (token_id/secret_hash) differs from the "
                            "logged one")
    return outcome


def _json_list(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check_status_lists(store: AuditStore) -> Outcome:
    """Every status list equals its logged creation (bits, size, key); its allocation counter
    equals the statements issued from it and its version the status changes logged on it;
    no index is used twice."""
    outcome = Outcome()
    created = _latest_by_subject(store, STATUS_LIST_EVENTS)
    issued = {row["status_list"]: row["n"] for row in _rows(
        store, "SELECT status_list, COUNT(*) AS n FROM statements WHERE status_list IS NOT NULL "
               "GROUP BY status_list")}
    changes: Counter[str] = Counter(
        json.loads(row["data"]).get("status_list") for row in _rows(
            store, "SELECT data FROM events WHERE type IN ('statement.revoked', "
                   "'statement.suspended', 'statement.unsuspended')"))
    for row, logged, where in _matched(store, outcome, "SELECT * FROM status_lists ORDER BY "
                                       "created_at, id", "id", created,
                                       lambda list_id: f"status list {list_id}"):
        list_id = row["id"]
        for column in ("bits", "size", "created_at"):
            if row[column] != logged.get(column):
                outcome.problem(f"{where}: {column} differs from the log")
        if key_digest(bytes(row["prp_key"])) != logged.get("key_digest"):
            outcome.problem(f"{where}: its permutation key differs from the logged one")
        if row["next_counter"] != issued.get(list_id, 0):
            outcome.problem(f"{where}: its allocation counter is {row['next_counter']} but "
                            f"{issued.get(list_id, 0)} statements were issued from it (a "
                            "rewound counter reuses indices)")
        if row["version"] != changes.get(list_id, 0):
            outcome.problem(f"{where}: its version differs from the status changes logged")
    listed = {row["id"] for row in _rows(store, "SELECT id FROM status_lists")}
    for list_id in sorted(set(issued) - listed - set(created)):
        outcome.problem(f"status list {list_id} holds statements but was never logged")
    for row in _rows(store, "SELECT status_list, status_idx, COUNT(*) AS n FROM statements "
                            "WHERE status_list IS NOT NULL GROUP BY status_list, status_idx "
                            "HAVING COUNT(*) > 1"):
        outcome.problem(f"status list {row['status_list']}: index {row['status_idx']} is used "
                        f"by {row['n']} statements")
    return outcome


def log_unlogged_state(store: AuditStore, *, time: int, actor: str) -> int:
    """Upgrading a database of schema 4 (which did not log them): log each API token's
    credential and each status list's creation as found, inside the caller's transaction.
    Returns how many entries it appended. Run once, by the upgrade only: run later, it would
    bless rows an attacker inserted."""
    appended = 0
    for row in list(_rows(store, "SELECT * FROM api_tokens ORDER BY created_at, name")):
        data = {key: row[key] for key in ("name", *_TOKEN_COLUMNS)}
        data.update(templates=_json_list(row["templates"]),
                    origin=_json_list(row["origin"] or "null"),
                    credential=credential_digest(row["token_id"], row["secret_hash"]))
        store.append_event(time=time, type="token.recorded", actor=actor, channel="cli",
                           subject=row["name"], data=data)
        appended += 1
    lists = _latest_by_subject(store, STATUS_LIST_EVENTS)
    for row in list(_rows(store, "SELECT * FROM status_lists ORDER BY created_at, id")):
        if row["id"] in lists:
            continue
        store.append_event(time=time, type="status_list.recorded", actor=actor, channel="cli",
                           subject=row["id"],
                           data=list_event(row["id"], row["bits"], row["size"],
                                           bytes(row["prp_key"]), row["created_at"]))
        appended += 1
    return appended


#: The state checks of ``issuer audit verify``, by the table they cover.
STATE_CHECKS: tuple[tuple[str, Check], ...] = (
    ("statements", check_statements),
    ("template_versions", check_template_versions),
    ("api_tokens", check_api_tokens),
    ("status_lists", check_status_lists),
)
