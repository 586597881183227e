"""Rate limit state shared by every replica and worker: one GCRA theoretical arrival time
(``tat``, milliseconds) per API token in the ``rate_limits`` table.

One atomic statement per request, the same on both engines: an upsert that moves the token's
``tat`` on only when the request is within its burst (``ON CONFLICT ... DO UPDATE ... WHERE``),
returning the new value; no row back means the request is over the limit. PostgreSQL locks the
token's row and SQLite takes its write lock (``BEGIN IMMEDIATE``), so concurrent requests of
one token on different replicas are counted one after the other, none lost.
"""

from __future__ import annotations

from issuer.store.audit import AuditStore

_TAKE = (
    "INSERT INTO rate_limits (key, tat_ms) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET tat_ms = "
    "(CASE WHEN rate_limits.tat_ms > ? THEN rate_limits.tat_ms ELSE ? END) + ? "
    "WHERE rate_limits.tat_ms - ? <= ? RETURNING tat_ms")


def take(store: AuditStore, key: str, now_ms: int, interval_ms: int, burst_ms: int) -> int:
    """Count one request of ``key``; returns 0 when it is allowed, else the milliseconds
    until it would be."""
    with store.lock:
        conn = store.conn
        # A write transaction from the start: SQLite then waits for another process's writer
        # (busy timeout) instead of failing an upgrade from a stale read snapshot.
        conn.begin_write()
        try:
            taken = conn.execute(_TAKE, (key, now_ms + interval_ms, now_ms, now_ms,
                                         interval_ms, now_ms, burst_ms)).fetchone()
            row = None if taken else conn.execute(
                "SELECT tat_ms FROM rate_limits WHERE key = ?", (key,)).fetchone()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return 0 if row is None else max(1, int(row[0]) - now_ms - burst_ms)
