"""The audit store: every issued statement and every event, in one SQLite file (SPEC "Audit").

Two kinds of rows:

- ``events``: the append-only record of everything that happened (statement issued, template
  changed, key generated, token created, ...), numbered by a gapless ``idx`` from 0. Each event
  is a canonical JSON object; later the transparency log hashes exactly these bytes.
- ``statements``: one row per issued statement with the fields queries filter on; its
  ``log_index`` points at the ``statement.issued`` event, which holds the full record (claims,
  mint-time values, the statement itself). Reading a record joins the two, so the large
  values are stored once. Rows are never updated in place except by a revocation, which is
  itself an event.

Durability: WAL journal with ``synchronous=FULL``, so a committed transaction has been fsynced
before ``commit`` returns; callers hand out a statement only after that.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import sqlite_utils

from issuer.core.encoding import canonical_json
from issuer.core.errors import AuditUnavailable, NotFound
from issuer.log.tlog import LogVerificationError, TransparencyLog, entry_bytes

BUSY_TIMEOUT_MS = 30_000

#: One entry per schema version; ``PRAGMA user_version`` says how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        idx INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        channel TEXT NOT NULL,
        subject TEXT NOT NULL,
        data TEXT NOT NULL
    );
    -- (type, idx), not (type, subject): a statement's subject is its random jti, and an index
    -- on it would cost a random insert per mint. Lookups by subject scan one type's rows.
    CREATE INDEX events_type ON events (type, idx);
    CREATE TABLE statements (
        jti TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        iss TEXT NOT NULL,
        kid TEXT NOT NULL,
        alg TEXT NOT NULL,
        template TEXT NOT NULL,
        template_digest TEXT NOT NULL,
        software_id TEXT,
        software_version TEXT,
        iat INTEGER NOT NULL,
        exp INTEGER NOT NULL,
        principal TEXT NOT NULL,
        channel TEXT NOT NULL,
        log_index INTEGER NOT NULL UNIQUE,
        revoked_at INTEGER,
        revocation_reason TEXT,
        status_list TEXT,
        status_idx INTEGER,
        status INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX statements_template ON statements (template, log_index);
    CREATE INDEX statements_software_id ON statements (software_id, log_index);
    CREATE INDEX statements_iat ON statements (iat);
    CREATE INDEX statements_kid ON statements (kid, exp);
    CREATE TABLE template_versions (
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        content TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        log_index INTEGER NOT NULL UNIQUE
    );
    CREATE INDEX template_versions_name ON template_versions (name, log_index);
    """,
    # 2: API tokens of the HTTP service; only a hash of each secret is kept.
    """
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        token_id TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        templates TEXT NOT NULL,
        rate_limit TEXT,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at INTEGER
    );
    """,
    # 3: the transparency log over the events (docs/transparency-log.md): hashes of complete
    # subtrees, and a signed checkpoint after every transaction that appended.
    """
    CREATE TABLE log_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TABLE log_checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        time INTEGER NOT NULL
    );
    """,
    # 4: Token Status Lists (docs/revocation.md): one row per list; each statement's entry and
    # status are columns of its row (statements.status_list, status_idx, status).
    """
    CREATE TABLE status_lists (
        id TEXT PRIMARY KEY,
        bits INTEGER NOT NULL,
        size INTEGER NOT NULL,
        prp_key BLOB NOT NULL,
        next_counter INTEGER NOT NULL,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX statements_status_changed ON statements (status_list) WHERE status != 0;
    CREATE INDEX statements_revoked ON statements (revoked_at) WHERE revoked_at IS NOT NULL;
    """,
    # 5: trusted publishing (docs/pipelines.md): statements minted through a CI publisher,
    # tokens that expire and say when they were last used, CI token ids accepted once, and
    # the Idempotency-Key of HTTP mints.
    """
    ALTER TABLE statements ADD COLUMN publisher TEXT;
    ALTER TABLE statements ADD COLUMN repository TEXT;
    CREATE INDEX statements_publisher ON statements (publisher, log_index)
        WHERE publisher IS NOT NULL;
    CREATE INDEX statements_repository ON statements (repository, log_index)
        WHERE repository IS NOT NULL;
    ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN rotated_at INTEGER;
    ALTER TABLE api_tokens ADD COLUMN publisher TEXT;
    ALTER TABLE api_tokens ADD COLUMN origin TEXT;
    CREATE TABLE ci_token_ids (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        exp INTEGER NOT NULL,
        PRIMARY KEY (issuer, jti)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        jti TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    """,
)

_STATUS_VALUES = {"statement.revoked": 1, "statement.suspended": 2, "statement.unsuspended": 0}
#: Status list columns of a statements row (the status registry's, not part of the record).
_STATUS_COLUMNS = ("status_list", "status_idx", "status")
#: Record fields kept only in the ``statement.issued`` event, not in the statements row.
_STORED_IN_EVENT = ("claims", "mint_values", "software_statement", "ci_claims")
#: The schema version that created the transparency log tables.
LOG_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class StatementRecord:
    """The audit record of one statement: every field of SPEC "Audit"."""

    jti: str
    digest: str
    iss: str
    kid: str
    alg: str
    template: str
    template_digest: str
    software_id: str | None
    software_version: str | None
    claims: dict[str, Any]
    mint_values: dict[str, Any]
    iat: int
    exp: int
    principal: str
    channel: str
    software_statement: str
    log_index: int = -1
    revoked_at: int | None = None
    revocation_reason: str | None = None
    #: Minted through a trusted publisher: its name, the source repository, and the CI
    #: token's verified claims (never the token itself).
    publisher: str | None = None
    repository: str | None = None
    ci_claims: dict[str, Any] | None = None
    #: ``canonical_json(claims)`` when the minter already has it (the signed payload's bytes):
    #: :meth:`event_text` splices it in rather than encoding the claims again.
    claims_json: bytes | None = field(default=None, compare=False, repr=False)

    def event_data(self) -> dict[str, Any]:
        """What the ``statement.issued`` event carries: the record as issued (the publisher
        fields only when there is a publisher, so other entries keep their shape)."""
        return {name: getattr(self, name) for name in _ISSUED_FIELDS
                if name not in _PUBLISHER_FIELDS or getattr(self, name) is not None}

    def event_text(self) -> str:
        """``canonical_json(event_data())``, byte for byte. With ``claims_json`` the members
        that sort before ``claims`` and those after are encoded on their own, and the claims
        spliced in between: canonical JSON is the sorted members joined by commas."""
        data = self.event_data()
        if self.claims_json is None:
            return canonical_json(data).decode("utf-8")
        del data["claims"]
        head = canonical_json({k: v for k, v in data.items() if k < "claims"})[:-1]
        tail = canonical_json({k: v for k, v in data.items() if k > "claims"})[1:]
        return b"".join((head, b"," if len(head) > 1 else b"", b'"claims":', self.claims_json,
                         b"," if len(tail) > 1 else b"", tail)).decode("utf-8")


_PUBLISHER_FIELDS = ("publisher", "repository", "ci_claims")
_ISSUED_FIELDS = tuple(f.name for f in fields(StatementRecord)
                       if f.name not in ("log_index", "revoked_at", "revocation_reason",
                                         "claims_json"))


@dataclass(frozen=True)
class Event:
    """One entry of the append-only event record."""

    idx: int
    time: int
    type: str
    actor: str
    channel: str
    subject: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def connect(path: Path) -> sqlite3.Connection:
    """Open the database for durable, concurrent use (WAL, FULL sync, busy timeout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: in WAL mode, NORMAL may lose the last commits on power loss; a returned statement
    # must never lose its record.
    conn.execute("PRAGMA synchronous = FULL")
    # Up to 256 MiB of page cache (a maximum, filled only as pages are read): the indexes that
    # every mint inserts into at random places (jti, digest, status index) stay in memory up
    # to millions of statements, so a mint costs the same at 1,000 entries as at 1,000,000.
    conn.execute("PRAGMA cache_size = -262144")
    return conn


class AuditStore:
    """Append-only records of statements and events over a ``sqlite_utils.Database``."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.conn = db.conn
        self.path = next((row[2] for row in self.conn.execute("PRAGMA database_list")
                          if row[1] == "main"), "") or ":memory:"
        self._readers = threading.local()
        #: The transparency log every appended event also enters (attached by the Authority).
        self.log: TransparencyLog | None = None
        self._appended_at: int | None = None  # time of the last event of the open transaction
        self._next_idx: int | None = None  # the next event index, counted within a transaction
        # One connection is shared by the threads of the service; SQLite serialises inside a
        # connection only per call, so whole transactions take this lock.
        self.lock = threading.RLock()
        self._migrate()

    @classmethod
    def open(cls, path: Path) -> AuditStore:
        try:
            return cls(sqlite_utils.Database(connect(path)))
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot open audit database {path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                #: The schema version this open found (the log catches up only on upgrade).
                self.opened_at_version = int(version)
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for sql in script.split(";"):
                        if sql.strip():
                            self.conn.execute(sql)
                    self.conn.execute(f"PRAGMA user_version = {number}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # --- writing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable write: ``BEGIN IMMEDIATE`` takes the write lock up front, ``COMMIT``
        returns once the WAL is fsynced; any exception rolls everything back.

        A database failure becomes AuditUnavailable: whatever the caller was about to hand
        out (a statement, a key) must not be handed out unrecorded.
        """
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.path}: {exc}") from None
            self._appended_at = None
            self._next_idx = None
            committed = False
            if self.log is not None:
                self.log.begin()
            try:
                yield
                if self.log is not None and self._appended_at is not None:
                    # The signed head covers every entry this transaction adds, and commits
                    # with them: no committed entry is ever outside a checkpoint.
                    self.log.checkpoint(self._appended_at)
                self.conn.execute("COMMIT")
                committed = True
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise AuditUnavailable(f"audit store {self.path}: {exc}") from None
                raise
            finally:
                self._next_idx = None
                if self.log is not None:
                    self.log.end(committed)

    def next_index(self) -> int:
        """The index the next event gets (read once per transaction, then counted)."""
        if self.conn.in_transaction and self._next_idx is not None:
            return self._next_idx
        row = self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM events").fetchone()
        if self.conn.in_transaction:
            self._next_idx = int(row[0])
        return int(row[0])

    def append_event(self, *, time: int, type: str, actor: str, channel: str, subject: str,
                     data: dict[str, Any]) -> int:
        """Append one event inside the caller's transaction; returns its index."""
        idx = self.next_index()
        text = canonical_json(data).decode("utf-8")
        self.conn.execute(
            "INSERT INTO events (idx, time, type, actor, channel, subject, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (idx, time, type, actor, channel, subject, text))
        self._logged(idx, time, type, actor, channel, subject, text)
        return idx

    def _logged(self, idx: int, time: int, type: str, actor: str, channel: str, subject: str,
                text: str) -> None:
        self._next_idx = idx + 1
        if self.log is not None:
            self.log.append(idx, entry_bytes(idx, time, type, actor, channel, subject, text))
            self._appended_at = time

    def entries(self, start: int, end: int) -> list[bytes]:
        """The leaf bytes of events ``start <= idx < end``, in order."""
        with self.lock:
            rows = self.conn.execute("SELECT idx, time, type, actor, channel, subject, data FROM "
                                     "events WHERE idx >= ? AND idx < ? ORDER BY idx",
                                     (start, end)).fetchall()
        return [entry_bytes(*row) for row in rows]

    def entry(self, idx: int) -> bytes:
        """The exact leaf bytes of event ``idx`` (docs/transparency-log.md)."""
        with self.lock:
            row = self.conn.execute("SELECT idx, time, type, actor, channel, subject, data "
                                    "FROM events WHERE idx = ?", (idx,)).fetchone()
        if row is None:
            raise NotFound(f"no log entry {idx}")
        return entry_bytes(*row)

    def record_statements(self, records: list[StatementRecord],
                          status: list[tuple[str, int]] | None = None) -> list[StatementRecord]:
        """Append a ``statement.issued`` event and a queryable row per record, in order, with
        one statement per table (a batch of 10,000 is two ``executemany``); ``status`` gives
        each record's status list and index."""
        start = self.next_index()
        events, rows, done = [], [], []
        for offset, record in enumerate(records):
            idx = start + offset
            text = record.event_text()
            events.append((idx, record.iat, "statement.issued", record.principal,
                           record.channel, record.jti, text))
            list_id, list_idx = status[offset] if status else (None, None)
            rows.append((record.jti, record.digest, record.iss, record.kid, record.alg,
                         record.template, record.template_digest, record.software_id,
                         record.software_version, record.iat, record.exp, record.principal,
                         record.channel, idx, list_id, list_idx, record.publisher,
                         record.repository))
            done.append(record if record.log_index == idx else replace(record, log_index=idx))
        self.conn.executemany("INSERT INTO events (idx, time, type, actor, channel, subject, "
                              "data) VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        self.conn.executemany(
            "INSERT INTO statements (jti, digest, iss, kid, alg, template, template_digest, "
            "software_id, software_version, iat, exp, principal, channel, log_index, "
            "status_list, status_idx, publisher, repository) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)
        for event in events:
            self._logged(*event)
        return done

    def touch_token(self, token_id: str, now: int) -> None:
        """Note an API token's use (operational, not an audit event: it changes nothing a
        record depends on). Best effort: a busy writer must not fail the request."""
        try:
            with self.lock:
                if not self.conn.in_transaction:
                    self.conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?",
                                      (now, token_id))
        except sqlite3.Error:
            pass

    def idempotent(self, scope: str, key: str, since: int) -> tuple[str, str] | None:
        """``(request_digest, jti)`` of a mint under this Idempotency-Key since ``since``."""
        row = self.conn.execute("SELECT request_digest, jti FROM idempotency_keys WHERE scope = ? "
                                "AND key = ? AND created_at >= ?", (scope, key, since)).fetchone()
        return (row[0], row[1]) if row else None

    def remember_idempotent(self, scope: str, key: str, digest: str, jti: str, now: int,
                            since: int) -> None:
        """Inside the mint's transaction: the key now names this statement."""
        self.conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (since,))
        self.conn.execute("INSERT OR REPLACE INTO idempotency_keys (scope, key, request_digest, "
                          "jti, created_at) VALUES (?, ?, ?, ?, ?)", (scope, key, digest, jti, now))

    def latest_template_version(self, name: str) -> tuple[str, dict[str, Any]] | None:
        row = self.conn.execute(
            "SELECT digest, content FROM template_versions WHERE name = ? "
            "ORDER BY log_index DESC LIMIT 1", (name,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def record_template_version(self, *, name: str, digest: str, content: dict[str, Any],
                                event_type: str, data: dict[str, Any], time: int, actor: str,
                                channel: str) -> int:
        """Append a template event and remember the version it introduced."""
        idx = self.append_event(time=time, type=event_type, actor=actor, channel=channel,
                                subject=name, data=data)
        self.conn.execute(
            "INSERT INTO template_versions (name, digest, content, recorded_at, log_index) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, digest, canonical_json(content).decode("utf-8"), time, idx))
        return idx

    # --- reading ---------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read on this thread's own read-only connection: it sees every committed write
        and never waits for the writer's transaction (WAL lets readers run beside it)."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            if self.path == ":memory:":
                with self.lock:
                    return self.conn.execute(sql, params).fetchall()
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            self._readers.conn = conn
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store {self.path}: {exc}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.db.query(sql, params))

    def statement(self, ref: str) -> StatementRecord:
        """Look a statement up by ``jti`` or by its lowercase hex ``digest``."""
        column = "digest" if _looks_like_digest(ref) else "jti"
        rows = self.query(f"{_RECORDS} WHERE s.{column} = ?", (ref.lower()
                          if column == "digest" else ref,))
        if not rows:
            raise NotFound(f"no statement with {column} {ref!r} in the audit records")
        return _record(rows[0])

    def statements(self, *, template: str | None = None, software_id: str | None = None,
                   since: int | None = None, kid: str | None = None,
                   after_index: int | None = None, limit: int | None = None,
                   revoked: bool | None = None, publisher: str | None = None,
                   repository: str | None = None) -> list[StatementRecord]:
        """Statements in issue order, filtered; ``after_index`` is the pagination cursor."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("template", template), ("software_id", software_id),
                              ("kid", kid), ("publisher", publisher),
                              ("repository", repository)):
            if value is not None:
                where.append(f"s.{column} = ?")
                params.append(value)
        if since is not None:
            where.append("s.iat >= ?")
            params.append(since)
        if after_index is not None:
            where.append("s.log_index > ?")
            params.append(after_index)
        if revoked is not None:
            where.append("s.revoked_at IS NOT NULL" if revoked else "s.revoked_at IS NULL")
        sql = _RECORDS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.log_index"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(row) for row in self.query(sql, params)]

    def check_statement_rows(self) -> int:
        """Every queryable statement row must equal the ``statement.issued`` entry it points
        at, column by column, and its revocation columns the logged revocation (the log covers
        the entries; this covers the copies)."""
        checked = 0
        with self.lock:
            revocations = {row[0]: (row[1], json.loads(row[2]).get("reason")) for row in
                           self.conn.execute("SELECT subject, time, data FROM events WHERE "
                                             "type = 'statement.revoked' ORDER BY idx")}
            statuses = {row[0]: _STATUS_VALUES[row[1]] for row in self.conn.execute(
                "SELECT subject, type FROM events WHERE type IN ('statement.revoked', "
                "'statement.suspended', 'statement.unsuspended') ORDER BY idx")}
            cursor = self.conn.execute(
                "SELECT s.*, e.type AS e_type, e.subject AS e_subject, e.data AS e_data "
                "FROM statements s LEFT JOIN events e ON e.idx = s.log_index ORDER BY s.log_index")
            names = [d[0] for d in cursor.description]
            while batch := cursor.fetchmany(1024):
                for values in batch:
                    row = dict(zip(names, values))
                    kind, subject, data = row.pop("e_type"), row.pop("e_subject"), row.pop("e_data")
                    where = f"statement {row['jti']} (log entry {row['log_index']})"
                    if kind != "statement.issued" or subject != row["jti"]:
                        raise LogVerificationError(f"{where} points at an entry that is not "
                                                   "its issuance")
                    issued = json.loads(data)
                    ref = issued.get("claims", {}).get("status", {}).get("status_list", {})
                    if (row["status_list"], row["status_idx"]) != (
                            str(ref.get("uri", "")).rsplit("/", 1)[-1] or None, ref.get("idx")):
                        raise LogVerificationError(f"{where}: status list entry differs from "
                                                   "the signed statement's")
                    if row["status"] != statuses.get(row["jti"], 0):
                        raise LogVerificationError(f"{where}: status differs from its logged "
                                                   "status changes")
                    for column, value in row.items():
                        if column in ("log_index", "revoked_at", "revocation_reason",
                                      *_STATUS_COLUMNS):
                            continue
                        if issued.get(column) != value:
                            raise LogVerificationError(f"{where}: column '{column}' differs "
                                                       "from the logged issuance")
                    if (row["revoked_at"], row["revocation_reason"]) != \
                            revocations.get(row["jti"], (None, None)):
                        raise LogVerificationError(f"{where}: revoked_at/revocation_reason "
                                                   "differ from its logged revocation")
                    checked += 1
        return checked

    def statement_counts_by_kid(self) -> dict[str, int]:
        """How many statements each key signed."""
        rows = self.query("SELECT kid, COUNT(*) AS n FROM statements GROUP BY kid")
        return {row["kid"]: row["n"] for row in rows}

    def count_statements(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM statements").fetchone()[0])

    def events(self, *, type_prefix: str | None = None, subject: str | None = None,
               start: int = 0, end: int | None = None) -> list[Event]:
        """Events in order, optionally of one type family or subject, ``start <= idx < end``."""
        where: list[str] = ["idx >= ?"]
        params: list[Any] = [start]
        if end is not None:
            where.append("idx < ?")
            params.append(end)
        if type_prefix is not None:
            where.append("type LIKE ? ESCAPE '\\'")
            params.append(type_prefix.replace("%", "\\%").replace("_", "\\_") + "%")
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY idx"
        return [_event(row) for row in self.query(sql, params)]

    def template_history(self, name: str) -> list[Event]:
        """The recorded versions of a template, oldest first."""
        return self.events(type_prefix="template.", subject=name)


def _looks_like_digest(ref: str) -> bool:
    return len(ref) == 64 and all(c in "0123456789abcdefABCDEF" for c in ref)


#: A statement record: its row, and the large values from its ``statement.issued`` event.
_RECORDS = ("SELECT s.*, e.data AS issued FROM statements s JOIN events e "
            "ON e.idx = s.log_index")


def _record(row: dict[str, Any]) -> StatementRecord:
    issued = json.loads(row.pop("issued"))
    for column in _STATUS_COLUMNS:
        row.pop(column, None)
    return StatementRecord(**row, **{name: issued.get(name) for name in _STORED_IN_EVENT})


def _event(row: dict[str, Any]) -> Event:
    return Event(**{**row, "data": json.loads(row["data"])})
