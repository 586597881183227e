"""The Merkle tree of the transparency log: RFC 9162 section 2.1 (same hashing as RFC 6962 2.1).

Definitions (RFC 9162 section 2.1.1), with HASH = SHA-256:

- ``MTH({}) = HASH()``, the hash of the empty string (:data:`EMPTY_ROOT`);
- ``MTH({d[0]}) = HASH(0x00 || d[0])`` (:func:`leaf_hash`);
- for ``n > 1``, with ``k`` the largest power of two smaller than ``n``,
  ``MTH(D_n) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` (:func:`node_hash`).

Storage. The log is append-only, so every *complete* subtree (a perfect binary tree of ``2**level``
leaves) never changes once its last leaf exists. We persist exactly those: node ``(level, index)``
is ``MTH(D[index * 2**level : (index + 1) * 2**level])``. Appending leaf ``n`` writes the level-0
node and, while the new node is a right child, its parent: amortised two writes, at most
``log2(n) + 1``, and one read per parent (:func:`nodes_for_append`). Any tree of size ``n`` splits
into complete subtrees by the binary representation of ``n``, and every range the RFC recursions
visit (root, PATH, SUBPROOF) is one complete node or a left complete node plus a smaller such
range, so roots and proofs read O(log n) stored nodes and never touch leaf data. The storage
contract is the small :class:`NodeStore` protocol; :class:`MemoryNodeStore` implements it for
tests, a database-backed store implements the same two methods.

Proofs. :func:`inclusion_proof` is PATH (RFC 9162 2.1.3.1) and :func:`consistency_proof` is
PROOF/SUBPROOF (2.1.4.1), both ordered from the leaves towards the root as the RFC concatenates
them. :func:`verify_inclusion` and :func:`verify_consistency` follow the verification algorithms
of 2.1.3.2 and 2.1.4.2 step by step and need only hashes. They return ``None`` on success and raise
:class:`ProofError` with a one-line reason on any failure, so a forgotten check cannot pass.

Edge cases the RFC leaves open, decided here (and matching transparency-dev/merkle, whose test
vectors are in ``tests/fixtures/vectors/merkle.json``):

- Inclusion in a tree of size 0 fails: 2.1.3.2 step 1 fails every ``leaf_index >= tree_size``.
- Consistency with ``first == 0`` fails. 2.1.4.1 and 2.1.4.2 define proofs only for
  ``0 < first < second``; every tree extends the empty tree, so such a "proof" would prove
  nothing, and a caller asking for it has a bug. :func:`consistency_proof` refuses it too.
- Consistency with ``first == second`` (> 0) succeeds exactly when the proof is empty and the two
  roots are equal. It is outside the 2.1.4.2 algorithm (whose step 1 rejects an empty proof),
  but SUBPROOF(m, D_m, true) is the empty list, and that is what generation returns.
- ``first > second`` fails.
- Every value the verifiers feed into HASH (leaf hash, proof elements, a prepended first root)
  must be 32 bytes; roots that are only compared are not length-checked, since a wrong length
  never equals a computed hash (and transparency-dev/merkle accepts ``first == second`` with
  equal roots of any length).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

#: SHA-256 output size: every leaf hash, node hash, root and proof element has this length.
HASH_SIZE = 32

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: MTH({}) = HASH() (RFC 9162 section 2.1.1): the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: A stored node: (level, index, hash); it covers leaves [index * 2**level, (index + 1) * 2**level).
Node = tuple[int, int, bytes]


class ProofError(ValueError):
    """An inclusion or consistency proof does not verify; the message says why, on one line."""


class NodeStore(Protocol):
    """Where the hashes of complete subtrees live.

    ``get_node(level, index)`` returns the hash of the complete subtree over leaves
    ``[index * 2**level, (index + 1) * 2**level)`` and raises :class:`KeyError` when it is not
    stored. ``put_nodes`` persists new nodes, atomically if the backend can: a crash must not
    leave a leaf without the parents :func:`nodes_for_append` computed with it. Nodes are
    immutable once written; a store should refuse to overwrite one with a different hash.
    """

    def get_node(self, level: int, index: int) -> bytes: ...

    def put_nodes(self, nodes: list[Node]) -> None: ...


class MemoryNodeStore:
    """A dict-backed :class:`NodeStore`, for tests and short-lived trees."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def put_nodes(self, nodes: list[Node]) -> None:
        # Check all before writing any, so a refused batch leaves the store unchanged.
        for level, index, value in nodes:
            old = self.nodes.get((level, index))
            if old is not None and old != value:
                raise ValueError(f"node ({level}, {index}) already stored with another hash")
        for level, index, value in nodes:
            self.nodes[(level, index)] = value


# --- hashing (RFC 9162 section 2.1.1) ---------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``HASH(0x00 || data)``: the hash of one log entry (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``HASH(0x01 || left || right)``: an interior node (RFC 9162 section 2.1.1).

    The distinct 0x00/0x01 prefixes keep a leaf from being passed off as an interior node
    (second-preimage resistance, RFC 9162 section 2.1.1).
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``): the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# --- appending and reading the tree -----------------------------------------------------------


def nodes_for_append(store: NodeStore, size: int, leaf: bytes) -> list[Node]:
    """The nodes to persist when the leaf with hash ``leaf`` becomes leaf number ``size``.

    Returns the level-0 node and every complete subtree that this leaf completes, bottom up.
    Leaf ``size`` completes a parent while its node is a right child (odd index), so this reads
    one stored left sibling per trailing one bit of ``size``: at most ``log2(size + 1)`` reads
    and amortised fewer than two. Nothing is written; pass the result to ``store.put_nodes``.
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    if len(leaf) != HASH_SIZE:
        raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
    nodes: list[Node] = [(0, size, leaf)]
    level, index, value = 0, size, leaf
    while index & 1:
        value = node_hash(store.get_node(level, index - 1), value)
        level, index = level + 1, index >> 1
        nodes.append((level, index, value))
    return nodes


def append(store: NodeStore, size: int, data: bytes) -> int:
    """Append the entry ``data`` to a tree of ``size`` leaves; return the new size.

    ``size`` must be the current size: the store refuses (or, if it does not check, corrupts
    itself with) a leaf written at an index already used.
    """
    store.put_nodes(nodes_for_append(store, size, leaf_hash(data)))
    return size + 1


def subtree_hash(store: NodeStore, start: int, end: int) -> bytes:
    """``MTH(D[start:end])`` (RFC 9162 section 2.1.1) from stored complete-subtree nodes.

    A range that is a complete, aligned subtree is one stored node. Any other range is split as
    the RFC splits it, at ``k`` = the largest power of two below its length. Every range the RFC
    recursions visit (:func:`root`, PATH, SUBPROOF) starts at a multiple of a power of two at
    least its length; then the left part is one stored node and only the right part recurses,
    so the cost is at most ``log2(end - start) + 1`` reads. An arbitrary unaligned range is still
    hashed correctly, but may read up to ``end - start`` nodes.
    """
    if not 0 <= start <= end:
        raise ValueError(f"bad range [{start}, {end})")
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if _is_power_of_two(n) and start % n == 0:
        level = n.bit_length() - 1
        return store.get_node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(store, start, start + k), subtree_hash(store, start + k, end))


def root(store: NodeStore, size: int) -> bytes:
    """``MTH(D_size)``: the root of the first ``size`` leaves (RFC 9162 section 2.1.1).

    Reads one stored node per one bit of ``size`` (at most ``log2(size) + 1``). Complete
    nodes never change, so the same store answers for every earlier size as well.
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    return subtree_hash(store, 0, size)


# --- generating proofs ------------------------------------------------------------------------


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """PATH(index, D_size), the inclusion proof of RFC 9162 section 2.1.3.1, leaf to root.

    ``0 <= index < size`` is required (there is no proof of inclusion in an empty tree).
    Reads O(log size) stored nodes.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _path(store, index, 0, size)


def _path(store: NodeStore, m: int, start: int, end: int) -> list[bytes]:
    # PATH(m, D[start:end]) with m relative to start, as in RFC 9162 2.1.3.1:
    # PATH(m, {d}) = {}; otherwise recurse into the half holding m and append the other half.
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return _path(store, m, start, start + k) + [subtree_hash(store, start + k, end)]
    return _path(store, m - k, start + k, end) + [subtree_hash(store, start, start + k)]


def consistency_proof(store: NodeStore, first: int, second: int) -> list[bytes]:
    """PROOF(first, D_second) = SUBPROOF(first, D_second, true), RFC 9162 section 2.1.4.1.

    Requires ``0 < first <= second``. The RFC defines PROOF for ``0 < first < second``; for
    ``first == second`` its SUBPROOF gives the empty list, which :func:`verify_consistency`
    accepts when the roots are equal. ``first == 0`` is refused: nothing needs proving.
    Reads O(log second) stored nodes.
    """
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    return _subproof(store, first, 0, second, True)


def _subproof(store: NodeStore, m: int, start: int, end: int, whole: bool) -> list[bytes]:
    # SUBPROOF(m, D[start:end], b) with m relative to start (RFC 9162 2.1.4.1). ``whole`` is the
    # RFC's b: true while D[start:start + m] is the entire old tree, whose root the verifier
    # already holds, so it is left out of the proof.
    n = end - start
    if m == n:
        return [] if whole else [subtree_hash(store, start, end)]
    k = _split(n)
    if m <= k:
        return _subproof(store, m, start, start + k, whole) + [subtree_hash(store, start + k, end)]
    return _subproof(store, m - k, start + k, end, False) + [subtree_hash(store, start, start + k)]


# --- verifying proofs (hashes only) -----------------------------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    # Not an RFC step. Every value fed into HASH must be one SHA-256 output: with variable
    # lengths, bytes could move across the boundary between a node's two children (a 48-byte
    # "hash" plus a 16-byte sibling concatenate like two honest hashes). Values that are only
    # compared need no check: a wrong length never equals a computed hash.
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for i, element in enumerate(proof):
        _check_hash(f"proof element {i}", element)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check that ``leaf`` (a leaf *hash*) is leaf ``index`` of the tree ``(size, expected_root)``.

    The algorithm of RFC 9162 section 2.1.3.2, step by step, after one check of our own: the
    leaf hash and every proof element must be :data:`HASH_SIZE` bytes. Raises
    :class:`ProofError` on failure, including for ``size == 0`` (step 1: no index is below 0).
    """
    _check_hash("leaf hash", leaf)
    _check_proof(proof)
    if index < 0:
        raise ProofError(f"leaf index {index} is negative")
    # 1. leaf_index >= tree_size fails.
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    # 2.-3. fn is the leaf's position, sn the last position; r starts at the leaf hash.
    fn, sn, r = index, size - 1, leaf
    # 4. Walk up: each proof element is the sibling of the node computed so far.
    for p in proof:
        # a. sn == 0 means we already reached the root: the proof is too long.
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} elements)")
        # b. fn is a right child, or the last node of its level: p is its left sibling.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # If LSB(fn) is not set, shift until it is or fn is 0: on those levels the node is
            # the last of its level, has no sibling, and is carried up unchanged.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # c.
        fn >>= 1
        sn >>= 1
    # 5. The proof must reach the root (sn == 0) and produce the expected root.
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} elements)")
    if r != expected_root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree ``(second, second_root)`` extends the tree ``(first, first_root)``.

    For ``0 < first < second`` this is the algorithm of RFC 9162 section 2.1.4.2, step by step.
    Outside that range (see the module docstring): ``first == 0`` and ``first > second`` fail,
    and ``first == second`` verifies exactly when the proof is empty and the roots are equal.
    Every proof element, and ``first_root`` when step 2 puts it into the path, must be
    :data:`HASH_SIZE` bytes. Raises :class:`ProofError` on failure.
    """
    _check_proof(proof)
    if first < 0 or second < 0:
        raise ProofError(f"tree sizes must be >= 0, got {first} and {second}")
    if first > second:
        raise ProofError(f"first size {first} is larger than second size {second}")
    if first == 0:
        # 2.1.4.2 requires 0 < first; an empty tree is a prefix of every tree, so a proof from it
        # proves nothing and asking for one signals a caller bug (transparency-dev/merkle agrees).
        # It is also load-bearing: with first == 0, fn = -1 and step 4 would never end.
        raise ProofError("consistency from an empty tree (first size 0) is not defined")
    if first == second:
        # SUBPROOF(m, D_m, true) is empty: equal sizes are consistent iff the roots are equal.
        if proof:
            raise ProofError(f"proof for equal sizes must be empty, got {len(proof)} elements")
        if first_root != second_root:
            raise ProofError(f"different roots for the same tree size {first}")
        return
    # 1. An empty proof fails (0 < first < second always needs at least one node).
    if not proof:
        raise ProofError(f"empty consistency proof from size {first} to size {second}")
    path = list(proof)
    # 2. When first is a power of two the old tree is a complete subtree of the new one and
    # SUBPROOF left its root out; the verifier holds it, so it goes back in front.
    if _is_power_of_two(first):
        _check_hash("first root", first_root)
        path.insert(0, first_root)
    # 3.
    fn, sn = first - 1, second - 1
    # 4. Climb past the levels where the old tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Both reconstructions start from the same node.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        # a. The new root was reached with elements left over.
        if sn == 0:
            raise ProofError(f"consistency proof is too long ({len(proof)} elements)")
        # b. c is a left sibling: it belongs to both trees.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # Same promotion of a sibling-less last node as in 2.1.3.2.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            # c is a right sibling that exists only in the new tree.
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7. Both roots must match and the path must end at the new root.
    if sn != 0:
        raise ProofError(f"consistency proof is too short ({len(proof)} elements)")
    if fr != first_root:
        raise ProofError("consistency proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("consistency proof does not lead to the second root")


class CompactRange:
    """The complete subtrees covering leaves ``[0, size)``, largest first: O(log n) memory.

    Streaming a log's leaves through ``append`` gives the root of every prefix on the way
    (``root()`` after each append is MTH of the leaves so far, RFC 9162 section 2.1.1), which is
    how a full recomputation checks every checkpoint in one pass without storing the tree.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing

    def append(self, leaf: bytes) -> None:
        level, value = 0, leaf
        while self._peaks and self._peaks[-1][0] == level:
            _, left = self._peaks.pop()
            level, value = level + 1, node_hash(left, value)
        self._peaks.append((level, value))
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves appended so far: the peaks folded from the right."""
        if not self._peaks:
            return EMPTY_ROOT
        value = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            value = node_hash(left, value)
        return value
