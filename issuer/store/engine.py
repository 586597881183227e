"""Storage engines: SQLite (the embedded default) or PostgreSQL (shared by replicas).

One code path for both, through SQLAlchemy (docs/dependencies.md): it parses the URL, pools
and re-establishes connections, knows each driver's exceptions and tells a lost connection
from a failed statement. The stores write portable SQL (``?`` placeholders; the column types
INTEGER, TEXT and BLOB) and :class:`Connection` runs it on either engine, so the queries the
audit store, the log and the status registry make exist once.

Each store holds one :class:`Connection` and takes the engine's write lock at the start of
every write transaction: ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL ``BEGIN`` and then the
caller locks the log's sequencer row (``SELECT ... FOR UPDATE``), which orders the writers of
every replica (:mod:`issuer.store.audit`).

A database error never escapes as a driver exception: it becomes
:class:`~issuer.core.errors.AuditUnavailable` (HTTP 503), and a connection the server dropped
is discarded so that the next call reconnects by itself.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.exc import DBAPIError as SqlAlchemyError
from sqlalchemy.pool import NullPool

from issuer.core.config import is_database_url
from issuer.core.errors import AuditUnavailable, ConfigError, DatabaseFailure

BUSY_TIMEOUT_MS = 30_000
#: How long opening a PostgreSQL connection may take before the request gets its 503.
CONNECT_TIMEOUT_S = 5


def describe(database: str | Path) -> str:
    """The database as messages may name it: a path, or the URL without its password."""
    if not is_database_url(database):
        return str(database)
    try:
        return make_url(str(database)).render_as_string(hide_password=True)
    except ArgumentError:
        return str(database).split("://", 1)[0] + "://(unparsable URL)"


def connect(path: Path) -> sqlite3.Connection:
    """Open a SQLite file for durable, concurrent use (WAL, FULL sync, busy timeout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: in WAL mode, NORMAL may lose the last commits on power loss; a returned statement
    # must never lose its record.
    conn.execute("PRAGMA synchronous = FULL")
    # At most 32 MiB of page cache per connection: memory stays flat whatever the number of
    # statements (a served process has several connections; a batch's transaction spills its
    # dirty pages to the WAL beyond it, still uncommitted). The random-keyed indexes (jti,
    # digest) outgrow it at a few hundred thousand statements and are then read through the
    # OS's page cache: a few microseconds a page, against the milliseconds of a commit's fsync
    # (docs/performance.md: single mints at 1,000,000 vs 1,000 entries).
    conn.execute("PRAGMA cache_size = -32768")
    return conn


def create_engine(database: str | Path) -> Engine:
    """The SQLAlchemy engine of a configured ``database`` (a SQLite path or a URL)."""
    if not is_database_url(database):
        path = Path(database)
        return sqlalchemy.create_engine("sqlite://", creator=lambda: connect(path),
                                        poolclass=NullPool)
    url = make_url(str(database)).set(drivername="postgresql+psycopg")
    try:
        # Autocommit at the driver: transactions are the explicit BEGIN/COMMIT of the stores,
        # and a read outside one holds no snapshot. pre_ping: a pooled connection that died
        # with a server restart is replaced before use, not handed to a request.
        return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                        pool_size=4, max_overflow=16,
                                        connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except (ImportError, NoSuchModuleError):
        raise ConfigError("database is a PostgreSQL URL but the driver is not installed "
                          "(pip install 'software-statement-issuer[postgresql]')") from None


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled). No statement of
    ours has a ``?`` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


_PG_TYPES = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bBLOB\b"), "BYTEA"),
             (re.compile(r"\)\s*WITHOUT ROWID"), ")"))


def _first_line(exc: BaseException) -> str:
    """A driver message on one line (psycopg's span several)."""
    text = str(getattr(exc, "orig", None) or exc)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or \
        type(exc).__name__


class Connection:
    """One connection of a store, with the DB-API surface the stores use (``execute``,
    ``executemany``, cursors) on either engine, and the write transaction of each."""

    def __init__(self, database: str | Path, engine: Engine | None = None) -> None:
        self.database = database
        self.described = describe(database)
        self.engine = engine or create_engine(database)
        self.dialect = self.engine.dialect.name  # "sqlite" or "postgresql"
        self.postgresql = self.dialect == "postgresql"
        #: Appended to the SELECT that locks a row for the rest of the transaction.
        self.for_update = " FOR UPDATE" if self.postgresql else ""
        self._raw: Any = None
        self._open()

    # --- the connection --------------------------------------------------------------

    def _open(self) -> Any:
        if self._raw is None:
            try:
                self._raw = self.engine.raw_connection()
            except (SqlAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:
                raise self._unavailable(exc) from None
        return self._raw

    def _unavailable(self, exc: BaseException) -> AuditUnavailable:
        # Its text names the database: for the server's log and the CLI, never an HTTP body.
        return DatabaseFailure(f"audit store {self.described}: {_first_line(exc)}")

    @contextmanager
    def _errors(self, cursor: Any = None) -> Iterator[None]:
        """Driver errors become AuditUnavailable; a dropped connection is let go, so the
        next call opens a fresh one (the service recovers when the database is back)."""
        try:
            yield
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raw, lost = self._raw, False
            if raw is not None:
                lost = self.engine.dialect.is_disconnect(exc, raw.driver_connection, cursor) \
                    or getattr(raw.driver_connection, "closed", False) is True
            if lost:
                self._drop()
            raise self._unavailable(exc) from None

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.invalidate()
            except Exception:  # already gone: nothing to release
                pass

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with self._errors():
                raw.close()
        self.engine.dispose()

    def sqlite_backup(self, target: sqlite3.Connection) -> None:
        """SQLite's online backup of this database into ``target`` (writers may go on)."""
        raw = self._open()
        with self._errors():
            raw.driver_connection.backup(target)

    def read_once(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read on a pooled connection of its own, returned to the pool at once: threads
        that only read never queue behind this connection's write transaction."""
        other = Connection(self.database, self.engine)
        try:
            rows: list[tuple[Any, ...]] = other.execute(sql, params).fetchall()
            return rows
        finally:
            raw, other._raw = other._raw, None
            if raw is not None:
                raw.close()

    @property
    def in_transaction(self) -> bool:
        if self._raw is None:
            return False
        driver = self._raw.driver_connection
        if self.postgresql:
            return bool(driver.info.transaction_status != 0)  # 0: IDLE
        return bool(driver.in_transaction)

    # --- statements ------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self.postgresql else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the DB-API cursor (``fetchone``, iteration, ...)."""
        raw = self._open()
        cursor = raw.cursor()
        with self._errors(cursor):
            cursor.execute(self._sql(sql), tuple(params))
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        raw = self._open()
        cursor = raw.cursor()
        with self._errors(cursor):
            cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        cursor = self.execute(sql, params)
        with self._errors(cursor):
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def script(self, script: str) -> None:
        """Run a migration script (statements separated by ``;``), in this engine's types."""
        if self.postgresql:
            for pattern, replacement in _PG_TYPES:
                script = pattern.sub(replacement, script)
        for sql in script.split(";"):
            if sql.strip():
                self.execute(sql)

    # --- transactions ----------------------------------------------------------------

    def begin_write(self) -> None:
        """Start a write transaction; on SQLite it holds the database's write lock already."""
        self.execute("BEGIN" if self.postgresql else "BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        """Start a read-only transaction that sees one snapshot of the database."""
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if self.postgresql
                     else "BEGIN DEFERRED")

    def commit(self) -> None:
        cursor = self.execute("COMMIT")
        # PostgreSQL answers COMMIT of a transaction in which a statement failed with ROLLBACK,
        # not an error: nothing of it may be reported as recorded.
        if self.postgresql and cursor.statusmessage != "COMMIT":
            raise DatabaseFailure(f"audit store {self.described}: the transaction was rolled "
                                   f"back ({cursor.statusmessage})")

    def rollback(self) -> None:
        """Roll back the open transaction, if the connection still has one."""
        if self.in_transaction:
            try:
                self.execute("ROLLBACK")
            except AuditUnavailable:
                self._drop()  # the server aborts what the lost connection left open

    # --- schema version --------------------------------------------------------------

    def lock_schema(self) -> None:
        """Inside a write transaction: only one replica migrates at a time (SQLite's write
        lock already covers it; PostgreSQL DDL waits on a transaction-scoped advisory lock)."""
        if self.postgresql:
            self.execute("SELECT pg_advisory_xact_lock(7591)")

    def schema_version(self) -> int:
        if not self.postgresql:
            return int(self.execute("PRAGMA user_version").fetchone()[0])
        self.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        row = self.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return 0 if row[0] is None else int(row[0])

    def set_schema_version(self, version: int) -> None:
        if self.postgresql:
            self.execute("DELETE FROM schema_version")
            self.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        else:
            self.execute(f"PRAGMA user_version = {int(version)}")
