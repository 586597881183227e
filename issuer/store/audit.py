"""The audit store: every issued statement and every event, in one database (docs/audit.md):
a SQLite file, or PostgreSQL shared by several replicas (:mod:`issuer.store.engine`).

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
before ``commit`` returns (PostgreSQL: its ``synchronous_commit``); callers hand out a statement
only after that.

One log across replicas: event indices come from the ``log_sequencer`` row, locked by every
write transaction before anything else and advanced in it, so writers of all replicas take
turns and an aborted transaction leaves no gap (a database sequence would). Each store also
remembers the longest log it has seen, and refuses a database whose log is shorter: one
restored or failed over to an older copy must not be continued silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from json.encoder import encode_basestring  # the string writer of ensure_ascii=False
from pathlib import Path
from typing import Any

from issuer.core.config import is_database_url
from issuer.core.encoding import canonical_json
from issuer.core.errors import (
    AuditUnavailable,
    ConfigError,
    Conflict,
    DatabaseFailure,
    NotFound,
    UnusableDatabase,
)
from issuer.log.tlog import TransparencyLog, entry_bytes
from issuer.store.engine import BUSY_TIMEOUT_MS, Connection, describe
from issuer.store.migrations import FIRST_RELEASED_VERSION, MIGRATIONS, STATE_LOGGED_VERSION

__all__ = ["DATABASE_ERRORS", "STATE_LOGGED_VERSION", "AuditStore", "StatementRecord"]

#: What the database engine raises when the file is unreadable or damaged.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)

#: Status list columns of a statements row (the status registry's, not part of the record).
_STATUS_COLUMNS = ("status_list", "status_idx", "status")
#: Record fields kept only in the ``statement.issued`` event, not in the statements row.
_STORED_IN_EVENT = ("claims", "mint_values", "software_statement", "ci_claims")


@dataclass(frozen=True)
class StatementRecord:
    """The audit record of one statement: every field of docs/audit.md."""

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
        """``canonical_json(event_data())``, byte for byte. With ``claims_json`` the members are
        written one by one in their sorted order and the claims spliced in: canonical JSON is
        the sorted members joined by commas, and encoding the claims again would cost as much
        as the rest of the record."""
        if self.claims_json is None:
            return canonical_json(self.event_data()).decode("utf-8")
        members = []
        for name, prefix in _EVENT_MEMBERS:
            if name == "claims":
                members.append(prefix + self.claims_json.decode("utf-8"))
                continue
            value = getattr(self, name)
            if value is None and name in _PUBLISHER_FIELDS:
                continue
            members.append(prefix + _json_text(value))
        return "{" + ",".join(members) + "}"


def _json_text(value: Any) -> str:
    """``canonical_json(value)`` as text; a string, number or null without the encoder."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    return canonical_json(value).decode("utf-8")


_PUBLISHER_FIELDS = ("publisher", "repository", "ci_claims")
_ISSUED_FIELDS = tuple(f.name for f in fields(StatementRecord)
                       if f.name not in ("log_index", "revoked_at", "revocation_reason",
                                         "claims_json"))
#: Each member of the ``statement.issued`` entry in canonical (sorted) order, with its
#: ``"name":`` prefix (the names are plain ASCII: nothing to escape).
_EVENT_MEMBERS = tuple((name, f'"{name}":') for name in sorted(_ISSUED_FIELDS))


#: ``(idx, time, type, actor, channel, subject)`` of an event, without its data.
EventHead = tuple[int, int, str, str, str, str]


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


#: How every refusal to open a database ends: what the user can do about it.
RESTORE_HINT = ("only `issuer init` creates a database: restore it from a backup "
                "(docs/operations.md, \"Backup and restore\") or fix `database` in issuer.toml")


def _prepare_file(path: Path, *, create: bool) -> None:
    """Only ``create`` (``issuer init``) makes a new SQLite file, and makes it 0600: it holds
    token hashes and the status lists' permutation keys. SQLite gives the WAL and
    shared-memory files the database file's mode."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    elif not path.is_file():
        raise UnusableDatabase(f"no issuer database at {path}; {RESTORE_HINT}")
    elif path.stat().st_size == 0:
        raise UnusableDatabase(f"the issuer database {path} is empty; {RESTORE_HINT}")


class AuditStore:
    """Append-only records of statements and events, on either engine."""

    def __init__(self, conn: Connection, *, create: bool = False) -> None:
        self.conn = conn
        self.path = conn.described
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []  # closed with the store
        #: The transparency log every appended event also enters (attached by the Authority).
        self.log: TransparencyLog | None = None
        self._appended_at: int | None = None  # time of the last event of the open transaction
        self._next_idx: int | None = None  # the next event index, counted within a transaction
        self._start_idx: int | None = None  # the sequencer's value when the transaction began
        #: The longest log this store has seen: a database that later holds fewer entries was
        #: rolled back behind it (restored from an old copy, failed over to a stale replica).
        self.high_water = 0
        # One connection is shared by the threads of the service; SQLite serialises inside a
        # connection only per call, so whole transactions take this lock.
        self.lock = threading.RLock()
        self._migrate(create)

    @classmethod
    def open(cls, database: Path | str, *, create: bool = False) -> AuditStore:
        """Open this issuer's database; only ``create`` (``issuer init``) makes a new one
        (a SQLite file; a PostgreSQL database is created empty by its administrator)."""
        if not is_database_url(database):
            _prepare_file(Path(database), create=create)
        conn: Connection | None = None
        try:
            conn = Connection(database)
            return cls(conn, create=create)
        except (sqlite3.Error, AuditUnavailable) as exc:
            if conn is not None:
                conn.close()
            detail = exc.description if isinstance(exc, AuditUnavailable) else str(exc)
            raise UnusableDatabase(f"cannot open the issuer database {describe(database)}: "
                                   f"{detail}; {RESTORE_HINT}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def close(self) -> None:
        # Readers too: a connection left open on a file that `issuer restore` then moves into
        # place would share its inode with the new connections and fail them.
        with self.lock:
            readers, self._reader_conns = self._reader_conns, []
        for reader in readers:
            reader.close()
        self.conn.close()

    def _migrate(self, create: bool) -> None:
        with self.lock:
            self.conn.begin_write()
            try:
                self.conn.lock_schema()
                version = self.conn.schema_version()
                if create and version > 0:  # a PostgreSQL database init was given
                    raise Conflict(f"the database {self.path} already holds an issuer's "
                                   "records; refusing to overwrite it")
                if version == 0 and not create:
                    raise UnusableDatabase(f"{self.path} holds no issuer database (no schema); "
                                           f"{RESTORE_HINT}")
                if 0 < version < FIRST_RELEASED_VERSION:
                    raise UnusableDatabase(f"{self.path} has schema version {version}, from "
                                           "before the first release; it cannot be upgraded")
                if version > len(MIGRATIONS):  # forward-only: never run on a newer schema
                    raise UnusableDatabase(f"{self.path} has schema version {version}, newer "
                                           f"than this issuer's {len(MIGRATIONS)}: upgrade "
                                           "the issuer package")
                #: The schema version this open found (upgrades log what it did not).
                self.opened_at_version = int(version)
                if 0 < version < STATE_LOGGED_VERSION and not self.conn.postgresql \
                        and self.path != ":memory:":
                    _owner_only(Path(self.path))  # schema 4 created them 0644
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    self.conn.script(script)
                    self.conn.set_schema_version(number)
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise

    # --- writing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable write: the engine's write lock and the log's sequencer row are taken up
        front, ``COMMIT`` returns once the write is durable; any exception rolls everything back.

        A database failure becomes AuditUnavailable: whatever the caller was about to hand
        out (a statement, a key) must not be handed out unrecorded.
        """
        with self.lock:
            self._appended_at = None
            self._next_idx = None
            committed = False
            if self.log is not None:
                self.log.begin()
            try:
                self.conn.begin_write()
                self._next_idx = self._start_idx = self._lock_sequencer()
                yield
                if self.log is not None and self._appended_at is not None:
                    # The signed head covers every entry this transaction adds, and commits
                    # with them: no committed entry is ever outside a checkpoint.
                    self.log.checkpoint(self._appended_at)
                if self._next_idx != self._start_idx:
                    self.conn.execute("UPDATE log_sequencer SET next_idx = ? WHERE id = 0",
                                      (self._next_idx,))
                self.conn.commit()
                committed = True
                self.high_water = max(self.high_water, self._next_idx)
            except BaseException as exc:
                self.conn.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise DatabaseFailure(f"audit store {self.path}: {exc}") from None
                raise
            finally:
                self._next_idx = self._start_idx = None
                if self.log is not None:
                    self.log.end(committed)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads on this store's connection that all see one state of the database, however
        many commits other processes make meanwhile (``audit verify`` beside live replicas)."""
        with self.lock:
            self.conn.begin_read()
            try:
                yield
            finally:
                self.conn.rollback()

    def _lock_sequencer(self) -> int:
        """Lock the sequencer row (PostgreSQL: until the transaction ends, so the writers of
        every replica take turns) and return the next event index, after checking that the
        database has not been rolled back behind this store's high-water mark."""
        row = self.conn.execute("SELECT next_idx FROM log_sequencer WHERE id = 0"
                                + self.conn.for_update).fetchone()
        size = int(row[0])
        self._check_high_water(size)
        return size

    def _check_high_water(self, size: int) -> None:
        if size < self.high_water:
            raise AuditUnavailable(
                f"audit store {self.path} holds {size} log entries but this process has seen "
                f"{self.high_water}: the database was rolled back (restored from an older copy "
                "or failed over to a stale standby); refusing to continue the log")
        self.high_water = size

    def check_head(self) -> int:
        """Read the log's length outside a transaction (health checks): raises when the
        database was rolled back behind what this process has seen."""
        with self.lock:
            size = int(self.conn.execute("SELECT next_idx FROM log_sequencer WHERE id = 0"
                                         ).fetchone()[0])
            self._check_high_water(size)
        return size

    def next_index(self) -> int:
        """The index the next event gets (the sequencer's, then counted in the transaction)."""
        if self._next_idx is not None:
            return self._next_idx
        with self.lock:
            return int(self.conn.execute("SELECT next_idx FROM log_sequencer WHERE id = 0"
                                         ).fetchone()[0])

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
        except (sqlite3.Error, AuditUnavailable):
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
        self.conn.execute("INSERT INTO idempotency_keys (scope, key, request_digest, jti, "
                          "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE "
                          "SET request_digest = excluded.request_digest, jti = excluded.jti, "
                          "created_at = excluded.created_at", (scope, key, digest, jti, now))

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
        if self.conn.postgresql:
            return self.conn.read_once(sql, params)
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            if self.path == ":memory:":
                with self.lock:
                    rows: list[tuple[Any, ...]] = self.conn.execute(sql, params).fetchall()
                    return rows
            # Used by its own thread only; closed by close() from whichever thread closes.
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self._readers.conn = conn
            with self.lock:
                self._reader_conns.append(conn)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise DatabaseFailure(f"audit store {self.path}: {exc}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return self.conn.query(sql, params)

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
                   revoked: bool | None = None, software_version: str | None = None,
                   principal: str | None = None, publisher: str | None = None,
                   repository: str | None = None, until: int | None = None,
                   status: str | None = None, now: int = 0,
                   revoked_kids: Sequence[str] = (), newest_first: bool = False
                   ) -> list[StatementRecord]:
        """Statements in issue order (or newest first), filtered; ``after_index`` is the
        pagination cursor.

        ``since <= iat < until``; ``status`` is one of active, revoked, suspended, expired as
        of ``now``, a statement of a key in ``revoked_kids`` counting as revoked."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("template", template), ("software_id", software_id),
                              ("kid", kid), ("software_version", software_version),
                              ("principal", principal), ("publisher", publisher),
                              ("repository", repository)):
            if value is not None:
                where.append(f"s.{column} = ?")
                params.append(value)
        if since is not None:
            where.append("s.iat >= ?")
            params.append(since)
        if until is not None:
            where.append("s.iat < ?")
            params.append(until)
        if status is not None:
            clause, values = _status_filter(status, now, revoked_kids)
            where.append(clause)
            params.extend(values)
        if after_index is not None:
            where.append("s.log_index > ?")
            params.append(after_index)
        if revoked is not None:
            where.append("s.revoked_at IS NOT NULL" if revoked else "s.revoked_at IS NULL")
        sql = _RECORDS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.log_index" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(row) for row in self.query(sql, params)]

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

    def event_heads(self, start: int, limit: int = 10_000) -> list[EventHead]:
        """``(idx, time, type, actor, channel, subject)`` of events from ``start``, at most
        ``limit``: what the audit log lines show, read on this thread's own reader (the
        writer's lock and connection stay with the writer)."""
        rows = self.read("SELECT idx, time, type, actor, channel, subject FROM events "
                         "WHERE idx >= ? ORDER BY idx LIMIT ?", (start, limit))
        return [(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5])) for r in rows]

    def backup(self, target: Path) -> int:
        """An online, consistent copy of the database into the new file ``target`` (0600),
        by SQLite's backup API: writers may go on meanwhile. Returns the copy's entry count.
        A PostgreSQL database is backed up by its own tools (docs/operations.md)."""
        if self.conn.postgresql:
            raise ConfigError(f"issuer backup copies a SQLite database; back up {self.path} "
                              "with pg_dump (docs/operations.md, \"Backup and restore\")")
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            copy = sqlite3.connect(target)
            try:
                with self.lock:
                    self.conn.sqlite_backup(copy)
                if copy.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise AuditUnavailable(f"the backup {target} does not pass SQLite's check")
                return int(copy.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            finally:
                copy.close()
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def log_key_event(self) -> dict[str, Any] | None:
        """What the ``log.key_generated`` event that started this database's log says."""
        with self.lock:
            row = self.conn.execute("SELECT data FROM events WHERE type = 'log.key_generated' "
                                    "ORDER BY idx LIMIT 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def template_history(self, name: str) -> list[Event]:
        """The recorded versions of a template, oldest first."""
        return self.events(type_prefix="template.", subject=name)


def _owner_only(path: Path) -> None:
    """The database and its WAL hold token hashes and status list keys: owner only."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(name), 0o600)


#: The status filters, in the order a statement's status is decided: revoked (itself or its
#: key), suspended, expired, active.
STATUS_FILTERS = ("active", "revoked", "suspended", "expired")


def _status_filter(status: str, now: int, revoked_kids: Sequence[str]) -> tuple[str, list[Any]]:
    kids = ", ".join("?" for _ in revoked_kids)
    if status == "revoked":
        return (f"(s.status = 1 OR s.kid IN ({kids}))" if kids else "s.status = 1",
                list(revoked_kids))
    clause, values = {"suspended": ("s.status = 2", []), "expired": ("s.status = 0 AND s.exp <= ?",
                      [now]), "active": ("s.status = 0 AND s.exp > ?", [now])}[status]
    if kids:
        clause += f" AND s.kid NOT IN ({kids})"
    return clause, [*values, *revoked_kids]


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
