"""The issuance transparency log: every audit event is a leaf of an RFC 9162 Merkle tree.

Leaf bytes (docs/transparency-log.md). Event ``idx`` is leaf ``idx``; its bytes are the
canonical JSON object (keys sorted, no whitespace, UTF-8, non-ASCII kept as is)::

    {"actor":A,"channel":C,"data":D,"idx":I,"subject":S,"time":T,"type":Y}

where ``D`` is the event's ``data`` column verbatim (itself canonical JSON) and the others are
JSON strings and integers. The leaf hash is ``SHA-256(0x00 || bytes)`` (RFC 9162 section 2.1.1).

Checkpoints follow C2SP tlog-checkpoint: a signed note whose text is the origin line, the tree
size and the base64 root hash, signed with the log's own Ed25519 key (C2SP signed-note), whose
verifier key ``<origin>+<key id>+<key>`` is published. A checkpoint is signed at the end of every
transaction that appended, in the same transaction, so the signed head always covers every
committed entry.

Appending costs O(log n): only the hashes of complete subtrees are stored
(:mod:`issuer.log.merkle`), and a checkpoint needs O(log n) of them.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from issuer.core.errors import IssuerError, NotFound, UsageError
from issuer.log import merkle
from issuer.log.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    verify_checkpoint,
)

class Sql(Protocol):
    """The DB-API connection surface the log uses: a SQLite connection, or the store's
    connection on either engine (:class:`issuer.store.engine.Connection`)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


ENTRY_FIELDS = ("idx", "time", "type", "actor", "channel", "subject", "data")


class LogVerificationError(IssuerError):
    """The log does not match its signed checkpoints: something was edited."""

    error = "log_verification_failed"
    status = 409


def origin_for(issuer: str) -> str:
    """The log's origin line: the issuer URL without its scheme, plus ``/issuance-log``
    (C2SP tlog-checkpoint: a schema-less URL that names the log)."""
    parts = urlsplit(issuer)
    return f"{parts.netloc}{parts.path}/issuance-log"


_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII without '"' and '\\': no escapes needed


@functools.lru_cache(maxsize=4096)
def _quoted(value: str) -> bytes:
    return _json_string(value)


def _json_string(value: str) -> bytes:
    # Undecorated, so that mutation testing mutates it (it skips decorated functions).
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _string(value: str) -> bytes:
    """A JSON string exactly as ``json.dumps(ensure_ascii=False)`` writes it; a jti or kid needs
    no escaping, so it skips the encoder (audit verify encodes a million of them)."""
    if _PLAIN.fullmatch(value):
        return b'"' + value.encode("ascii") + b'"'
    return _quoted(value)  # actor, channel and type repeat: each is encoded once


def entry_bytes(idx: int, time: int, type: str, actor: str, channel: str, subject: str,
                data: str) -> bytes:
    """The leaf bytes of one event (module docstring): canonical JSON, ``data`` spliced in
    verbatim so no re-serialisation can change a byte."""
    return b"".join((
        b'{"actor":', _string(actor), b',"channel":', _string(channel), b',"data":',
        data.encode("utf-8"), b',"idx":', str(int(idx)).encode(), b',"subject":',
        _string(subject), b',"time":', str(int(time)).encode(), b',"type":', _string(type),
        b"}"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise UsageError(f"{what} is not base64") from None


class SqliteNodeStore:
    """:class:`issuer.log.merkle.NodeStore` over the ``log_nodes`` table.

    Nodes written during a transaction are held in memory and inserted in one ``executemany``
    by :meth:`flush` (before the checkpoint, inside the same transaction), so a batch of
    appends reads its own fresh nodes without a query each.
    """

    def __init__(self, conn: Sql) -> None:
        self.conn = conn
        self.pending: dict[tuple[int, int], bytes] = {}
        #: The complete subtrees that make up the current tree (its right edge), kept in memory
        #: between transactions: appends and roots read only these.
        self.peaks: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes:
        fresh = self.pending.get((level, index)) or self.peaks.get((level, index))
        if fresh is not None:
            return fresh
        row = self.conn.execute("SELECT hash FROM log_nodes WHERE level = ? AND idx = ?",
                                (level, index)).fetchone()
        if row is None:
            raise KeyError((level, index))
        return bytes(row[0])

    def put_nodes(self, nodes: list[merkle.Node]) -> None:
        for level, index, value in nodes:
            self.pending[(level, index)] = value

    def flush(self) -> None:
        # Plain INSERT: the primary key refuses to overwrite a node that already exists.
        self.conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
                              [(lvl, i, h) for (lvl, i), h in self.pending.items()])
        self.pending.clear()


@dataclass(frozen=True)
class InclusionProof:
    """Everything an offline verifier needs to prove one entry is in the log."""

    log_index: int
    tree_size: int
    entry: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str  # the signed note of tree_size

    def as_json(self) -> dict[str, Any]:
        """The proof with its entry, for the operator and auditors."""
        return {**self.as_public_json(), "entry": self.entry.decode("utf-8")}

    def as_public_json(self) -> dict[str, Any]:
        """The proof without the entry: an audit entry names the minting principal and the
        mint-time values, which only auditors see (docs/transparency-log.md)."""
        return {"log_index": self.log_index, "tree_size": self.tree_size,
                "leaf_hash": b64(merkle.leaf_hash(self.entry)),
                "inclusion_proof": [b64(h) for h in self.hashes],
                "checkpoint": self.checkpoint}


class TransparencyLog:
    """The Merkle tree and checkpoints kept beside the events, in the same database."""

    def __init__(self, conn: Sql, signer: Callable[[], NoteSigner],
                 verifier: NoteVerifier) -> None:
        self.conn = conn
        self.store = SqliteNodeStore(conn)
        self._load_signer = signer  # loaded at the first checkpoint: readers need no passphrase
        self._signer: NoteSigner | None = None
        self.verifier = verifier
        self._next: int | None = None  # the next leaf index, counted within a transaction
        self._peaks_size: int | None = None  # the tree size store.peaks describe
        self._signed: str | None = None  # the checkpoint the open transaction signed
        #: Called with each checkpoint once its transaction committed (the high-water mark).
        self.on_commit: Callable[[str], None] | None = None

    def begin(self) -> None:
        """A transaction starts: the tree size is read again at the first append."""
        self._next = None
        self._signed = None
        self.store.pending.clear()

    def end(self, committed: bool) -> None:
        """The transaction ended: forget its count and unflushed nodes; after a rollback the
        in-memory right edge describes a tree that does not exist, so it goes too. A committed
        checkpoint goes to ``on_commit`` (after the commit: the mark may lag, never lead)."""
        self._next = None
        self.store.pending.clear()
        signed, self._signed = self._signed, None
        if not committed:
            self._peaks_size = None
            self.store.peaks.clear()
        elif signed is not None and self.on_commit is not None:
            self.on_commit(signed)

    def _load_peaks(self, size: int) -> None:
        """The stored complete subtrees of a tree of ``size`` leaves (one per 1-bit), unless
        the cached ones already describe it. Another writer may have appended meanwhile: the
        size read from the database at the start of each transaction tells."""
        if self._peaks_size == size:
            return
        self.store.peaks.clear()
        keys, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                keys.append((level, start >> level))
                start += 1 << level
        # One query, not one per peak: with several replicas the tree grows between one
        # replica's transactions, so each of them reloads its right edge.
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(keys))
        found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in self.conn.execute(
            f"SELECT level, idx, hash FROM log_nodes WHERE {where}",
            [v for key in keys for v in key]).fetchall()} if keys else {}
        for key in keys:
            if key not in found:
                raise KeyError(key)
            self.store.peaks[key] = found[key]
        self._peaks_size = size

    @property
    def origin(self) -> str:
        return self.verifier.name

    def size(self) -> int:
        """Leaves in the tree (O(log n): the primary key's last level-0 node)."""
        if self._next is not None:
            return self._next
        row = self.conn.execute("SELECT MAX(idx) FROM log_nodes WHERE level = 0").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def append(self, idx: int, entry: bytes) -> None:
        """Add leaf ``idx`` (inside the caller's transaction)."""
        size = self.size()
        if size != idx:  # never build on a damaged tree: verification must see it
            raise LogVerificationError(f"the transparency log holds {size} leaves but "
                                       f"entry {idx} is next; run `issuer audit verify`")
        self._load_peaks(size)
        nodes = merkle.nodes_for_append(self.store, idx, merkle.leaf_hash(entry))
        self.store.put_nodes(nodes)
        top_level, top_index, top = nodes[-1]  # it absorbed every smaller peak
        peaks = self.store.peaks
        for key in [k for k in peaks if k[0] < top_level]:
            del peaks[key]
        peaks[(top_level, top_index)] = top
        self._peaks_size = idx + 1
        self._next = idx + 1

    def checkpoint(self, time: int) -> str:
        """Sign and store the checkpoint of the current tree (inside the transaction)."""
        if self._signer is None:
            self._signer = self._load_signer()
        self.store.flush()
        size = self.size()
        head = Checkpoint(origin=self.origin, size=size, root_hash=merkle.root(self.store, size))
        note = sign_checkpoint(self._signer, head)
        self.conn.execute("INSERT INTO log_checkpoints (tree_size, root_hash, note, time) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO UPDATE SET "
                          "root_hash = excluded.root_hash, note = excluded.note, "
                          "time = excluded.time", (size, head.root_hash, note, time))
        self._signed = note
        return note

    def latest(self) -> tuple[Checkpoint, str]:
        """The newest signed checkpoint, its signature checked."""
        row = self.conn.execute("SELECT note FROM log_checkpoints ORDER BY tree_size DESC "
                                "LIMIT 1").fetchone()
        if row is None:
            raise NotFound("the log has no checkpoint yet")
        return self.open(row[0]), row[0]

    def note_at(self, size: int) -> str:
        row = self.conn.execute("SELECT note FROM log_checkpoints WHERE tree_size = ?",
                                (size,)).fetchone()
        if row is None:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return str(row[0])

    def open(self, note: str) -> Checkpoint:
        """A checkpoint note verified with this log's key and origin."""
        try:
            return verify_checkpoint(note, self.verifier, origin=self.origin)
        except NoteError as exc:
            raise LogVerificationError(f"checkpoint does not verify with the log key: "
                                       f"{exc}") from None

    # --- proofs ------------------------------------------------------------------------------

    def _tree_size(self, tree_size: int | None) -> tuple[int, str]:
        if tree_size is None:
            head, note = self.latest()
            return head.size, note
        return tree_size, self.note_at(tree_size)

    def inclusion(self, index: int, entry: bytes, tree_size: int | None = None) -> InclusionProof:
        """RFC 9162 section 2.1.3.1 proof of leaf ``index`` in a checkpointed tree."""
        size, note = self._tree_size(tree_size)
        if not 0 <= index < size:
            raise NotFound(f"entry {index} is not in the tree of size {size}")
        hashes = merkle.inclusion_proof(self.store, index, size)
        return InclusionProof(index, size, entry, tuple(hashes), note)

    def consistency(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 section 2.1.4.1 proof that tree ``second`` extends tree ``first``."""
        current = self.size()
        if not 0 < first <= second <= current:
            raise UsageError(f"need 0 < first <= second <= {current} (the tree size), got "
                             f"first={first}, second={second}")
        return merkle.consistency_proof(self.store, first, second)


# --- offline verification: a checkpoint, a proof and a leaf ------------------------------------


def verify_inclusion_offline(checkpoint: str, log_key: str, entry: bytes, log_index: int,
                             proof: list[bytes]) -> Checkpoint:
    """Prove ``entry`` is leaf ``log_index`` of the tree a signed checkpoint commits to.

    Needs nothing from the issuer but these values; raises LogVerificationError otherwise.
    """
    return verify_leaf_inclusion_offline(checkpoint, log_key, merkle.leaf_hash(entry), log_index,
                                         proof)


def verify_leaf_inclusion_offline(checkpoint: str, log_key: str, leaf_hash: bytes,
                                  log_index: int, proof: list[bytes]) -> Checkpoint:
    """Prove a leaf hash (RFC 9162 section 2.1.1) is leaf ``log_index`` of a signed tree: what
    the public inclusion proof allows, since the entry itself goes to auditors only."""
    verifier = _verifier(log_key)
    try:
        head = verify_checkpoint(checkpoint, verifier, origin=verifier.name)
        merkle.verify_inclusion(leaf_hash, log_index, head.size, proof, head.root_hash)
    except (NoteError, merkle.ProofError) as exc:
        raise LogVerificationError(f"inclusion does not verify: {exc}") from None
    return head


def verify_consistency_offline(old_checkpoint: str, new_checkpoint: str, log_key: str,
                               proof: list[bytes]) -> tuple[Checkpoint, Checkpoint]:
    """Prove the tree of ``new_checkpoint`` extends the tree of ``old_checkpoint``."""
    verifier = _verifier(log_key)
    try:
        old = verify_checkpoint(old_checkpoint, verifier, origin=verifier.name)
        new = verify_checkpoint(new_checkpoint, verifier, origin=verifier.name)
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except (NoteError, merkle.ProofError) as exc:
        raise LogVerificationError(f"consistency does not verify: {exc}") from None
    return old, new


def _verifier(log_key: str) -> NoteVerifier:
    try:
        return NoteVerifier.from_key(log_key.strip())
    except NoteError as exc:
        raise UsageError(f"log key: {exc}") from None


# --- full verification ---------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What ``issuer audit verify`` checked."""

    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root_hash: bytes = b""
    consistent_with: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "checkpoints_compared": self.checkpoints,
                "tree_size": self.tree_size, "root_hash": b64(self.root_hash),
                "consistent_with": self.consistent_with}


def _rows(conn: Sql, sql: str) -> Iterator[tuple[Any, ...]]:
    cursor = conn.execute(sql)
    while batch := cursor.fetchmany(4096):
        yield from batch


def verify_log(log: TransparencyLog, old_checkpoints: Sequence[str] = ()) -> VerifyReport:
    """Recompute the whole tree from the stored entries and check it against the signed
    checkpoints; raise LogVerificationError naming the first bad index.

    One pass, O(log n) memory: every entry's leaf hash is compared with the stored one, and the
    running root with every stored checkpoint; the newest checkpoint's signature is checked, and
    so is each old checkpoint given (kept by an auditor), which must be a prefix of this log.
    """
    head, _ = log.latest()
    kept = sorted((log.open(note) for note in old_checkpoints), key=lambda c: c.size)
    olds = [c for c in kept if c.size > 0]  # every log extends the empty tree
    report = VerifyReport()
    frontier = merkle.CompactRange()
    stored_leaves = _rows(log.conn, "SELECT idx, hash FROM log_nodes WHERE level = 0 ORDER BY idx")
    checkpoints = _rows(log.conn, "SELECT tree_size, root_hash FROM log_checkpoints "
                                  "ORDER BY tree_size")
    next_cp = next(checkpoints, None)
    previous_size = 0
    for row in _rows(log.conn, "SELECT idx, time, type, actor, channel, subject, data "
                               "FROM events ORDER BY idx"):
        idx = row[0]
        expected = frontier.size
        if idx != expected:
            raise LogVerificationError(f"entry {expected} is missing: the next stored entry is "
                                       f"{idx} (deleted or renumbered)")
        leaf = merkle.leaf_hash(entry_bytes(*row))
        stored = next(stored_leaves, None)
        if stored is None or stored[0] != idx:
            raise LogVerificationError(f"entry {idx} was added outside the log (no leaf hash)")
        if bytes(stored[1]) != leaf:
            raise LogVerificationError(f"entry {idx} was edited: its content no longer hashes "
                                       "to the leaf the log recorded")
        frontier.append(leaf)
        while next_cp is not None and next_cp[0] == frontier.size:
            if bytes(next_cp[1]) != frontier.root():
                log.open(log.note_at(next_cp[0]))  # blame the entries only if it is authentic
                raise LogVerificationError(
                    f"entries {previous_size}..{next_cp[0] - 1} do not match the checkpoint "
                    f"signed at tree size {next_cp[0]}: the first bad index is at or after "
                    f"{previous_size}")
            previous_size = next_cp[0]
            report.checkpoints += 1
            next_cp = next(checkpoints, None)
        while olds and olds[0].size == frontier.size:
            old = olds.pop(0)
            if old.root_hash != frontier.root():
                raise LogVerificationError(
                    f"the log is not consistent with the checkpoint of tree size {old.size} "
                    "kept earlier: history before it was rewritten")
            report.consistent_with.append(old.size)
    size = frontier.size
    if next(stored_leaves, None) is not None:
        raise LogVerificationError(f"the log has leaves past entry {size - 1} whose entries "
                                   "were deleted")
    if olds:
        raise LogVerificationError(f"the checkpoint kept earlier has tree size {olds[0].size} "
                                   f"but the log now holds only {size} entries: entries were "
                                   "deleted")
    if size != head.size:
        raise LogVerificationError(
            f"the log holds {size} entries but its newest signed checkpoint covers {head.size}: "
            + ("entries were deleted" if size < head.size else
               f"entries {head.size}..{size - 1} were added without a checkpoint"))
    if frontier.root() != head.root_hash:
        raise LogVerificationError("the entries do not hash to the newest signed checkpoint's "
                                   "root")
    for old in kept:  # the same fact, as an RFC 9162 consistency proof from the stored nodes
        if 0 < old.size < head.size:
            try:
                merkle.verify_consistency(old.size, head.size, old.root_hash, head.root_hash,
                                          log.consistency(old.size, head.size))
            except merkle.ProofError as exc:
                raise LogVerificationError(f"no consistency proof from tree size {old.size}: "
                                           f"{exc}") from None
    report.entries, report.tree_size, report.root_hash = size, size, head.root_hash
    return report
