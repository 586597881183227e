"""Transparency log append cost at 1 thousand vs 1 million entries (issue: tamper-evident log).

Builds the stored tree of N leaves (the same ``log_nodes`` rows the issuer writes, bulk
inserted), then times the issuer's real append path on top of it: one transaction per entry
that appends the leaf (O(log n) node reads and writes) and signs a checkpoint. Cost should be
flat in N: the printed ratio is append rate at 1M over append rate at 1k (target >= 0.8).
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

from issuer.log import merkle
from issuer.log.note import NoteSigner
from issuer.log.tlog import TransparencyLog
from issuer.store.engine import connect

from .common import Row, best_rate

SCHEMA = """
CREATE TABLE log_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
                        PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE log_checkpoints (tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL,
                              note TEXT NOT NULL, time INTEGER NOT NULL);
"""


def build(conn: sqlite3.Connection, n: int) -> None:
    """The complete-subtree nodes of n synthetic leaves, computed in one pass and bulk inserted."""
    conn.executescript(SCHEMA)
    batch: list[tuple[int, int, bytes]] = []
    peaks: list[tuple[int, int, bytes]] = []  # (level, index, hash)
    conn.execute("BEGIN")
    for i in range(n):
        node = (0, i, merkle.leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()))
        batch.append(node)
        while peaks and peaks[-1][0] == node[0]:
            left = peaks.pop()
            node = (node[0] + 1, i >> (node[0] + 1), merkle.node_hash(left[2], node[2]))
            batch.append(node)
        peaks.append(node)
        if len(batch) > 100_000:
            conn.executemany("INSERT INTO log_nodes VALUES (?, ?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO log_nodes VALUES (?, ?, ?)", batch)
    conn.execute("COMMIT")


def append_rate(n: int, appends: int, directory: Path) -> float:
    path = directory / f"log-{n}.db"
    conn = connect(path)
    build(conn, n)
    signer = NoteSigner.generate("bench.example/issuance-log")
    log = TransparencyLog(conn, lambda: signer, signer.verifier())
    assert log.size() == n
    frontier = merkle.CompactRange()  # the bulk build must be exactly what appends would store
    for i in range(n):
        frontier.append(merkle.leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()))
    assert merkle.root(log.store, n) == frontier.root()
    size = [n]

    def run() -> int:
        for _ in range(appends):
            conn.execute("BEGIN IMMEDIATE")
            log.begin()
            log.append(size[0], b'{"bench":%d}' % size[0])
            log.checkpoint(0)
            conn.execute("COMMIT")
            log.end(committed=True)
            size[0] += 1
        return appends

    rate = best_rate(run)
    conn.close()
    return rate


def run(large: int = 1_000_000, appends: int = 2000) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        small_rate = append_rate(1_000, appends, Path(tmp))
        large_rate = append_rate(large, appends, Path(tmp))
    ratio = large_rate / small_rate
    return [Row(f"log append (durable txn + checkpoint), {large:,} vs 1,000 entries",
                f"{large_rate:,.0f}/s", f"{small_rate:,.0f}/s", ratio, ">=", 0.8)]
