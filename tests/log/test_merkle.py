"""The transparency-log Merkle tree (RFC 9162 section 2.1): published vectors, exhaustive small
trees, random large trees against a reference written from the RFC text, tampering, and the
O(log n) storage cost of appends, roots and proofs."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from issuer.log.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryNodeStore,
    Node,
    ProofError,
    append,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    nodes_for_append,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import vector

VECTORS: Any = vector("merkle.json")
TREE = VECTORS["reference_tree"]
LEAVES = [bytes.fromhex(h) for h in TREE["leaf_inputs_hex"]]
SMALL = 64  # exhaustive checks cover every size up to this
LARGE = 3000  # random checks draw sizes up to this


# --- reference: RFC 9162 section 2.1 written out over the whole leaf list ----------------------


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = ref_split(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_split(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_split(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --- helpers ------------------------------------------------------------------------------------


class CountingStore(MemoryNodeStore):
    """Counts node reads and writes, to check the O(log n) claims."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0

    def get_node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return super().get_node(level, index)

    def put_nodes(self, nodes: list[Node]) -> None:
        self.writes += len(nodes)
        super().put_nodes(nodes)


def build(leaves: Sequence[bytes]) -> MemoryNodeStore:
    store = MemoryNodeStore()
    size = 0
    for data in leaves:
        size = append(store, size, data)
    return store


def entries(n: int) -> list[bytes]:
    """Distinct entries, so that no two leaf hashes are equal (a wrong index must then fail)."""
    return [f"entry {i}".encode() for i in range(n)]


@cache
def small_tree() -> tuple[MemoryNodeStore, list[bytes]]:
    leaves = entries(SMALL)
    return build(leaves), leaves


@cache
def large_tree() -> tuple[MemoryNodeStore, list[bytes]]:
    leaves = entries(LARGE)
    return build(leaves), leaves


@cache
def small_roots() -> list[bytes]:
    store, _ = small_tree()
    return [root(store, n) for n in range(SMALL + 1)]


def flip(value: bytes, bit: int = 0) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def b64_proof(value: list[str] | None) -> list[bytes]:
    return [b64(p) for p in value or []]


# --- hashing and the reference tree (transparency-dev/merkle testonly/constants.go) ------------


def test_hash_conventions() -> None:
    assert EMPTY_ROOT == bytes.fromhex(TREE["empty_root_hex"]) == hashlib.sha256(b"").digest()
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert VECTORS["hash_conventions"]["leaf_prefix_hex"] == "00"
    assert VECTORS["hash_conventions"]["node_prefix_hex"] == "01"


def test_reference_roots_for_sizes_0_to_8() -> None:
    store = build(LEAVES)
    expected = {int(n): bytes.fromhex(h) for n, h in TREE["root_hex_by_tree_size"].items()}
    assert sorted(expected) == list(range(9))
    for n, want in expected.items():
        assert root(store, n) == want
        assert subtree_hash(store, 0, n) == want
        assert ref_mth(LEAVES[:n]) == want


def test_reference_roots_while_growing() -> None:
    """Each root is right at the moment it is the newest one, not only once the tree is full."""
    store = MemoryNodeStore()
    for n, data in enumerate(LEAVES):
        assert append(store, n, data) == n + 1
        assert root(store, n + 1).hex() == TREE["root_hex_by_tree_size"][str(n + 1)]


def test_reference_node_hashes_are_exactly_the_stored_nodes() -> None:
    store = build(LEAVES)
    levels = TREE["node_hashes_hex_by_level"]["levels"]
    expected = {(level, index): bytes.fromhex(h)
                for level, row in enumerate(levels) for index, h in enumerate(row)}
    assert store.nodes == expected
    for (level, index), value in expected.items():
        assert subtree_hash(store, index << level, (index + 1) << level) == value
    assert [leaf_hash(d) for d in LEAVES] == [bytes.fromhex(h) for h in levels[0]]


# --- published proofs (transparency-dev/merkle proof/verify_test.go) ---------------------------


@pytest.mark.parametrize("case", VECTORS["inclusion_proofs_hex"]["vectors"],
                         ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}")
def test_inclusion_hex_vectors(case: dict[str, Any]) -> None:
    leaf = leaf_hash(bytes.fromhex(case["leaf_input_hex"]))
    path = [bytes.fromhex(h) for h in case["path_hex"]]
    want_root = bytes.fromhex(case["root_hex"])
    assert case["should_verify"] is True
    verify_inclusion(leaf, case["leaf_index"], case["tree_size"], path, want_root)
    store = build(LEAVES)
    assert inclusion_proof(store, case["leaf_index"], case["tree_size"]) == path
    assert root(store, case["tree_size"]) == want_root


@pytest.mark.parametrize("case", VECTORS["consistency_proofs_hex"]["vectors"],
                         ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_consistency_hex_vectors(case: dict[str, Any]) -> None:
    path = [bytes.fromhex(h) for h in case["path_hex"]]
    root1, root2 = bytes.fromhex(case["root1_hex"]), bytes.fromhex(case["root2_hex"])
    assert case["should_verify"] is True
    verify_consistency(case["size1"], case["size2"], root1, root2, path)
    store = build(LEAVES)
    assert consistency_proof(store, case["size1"], case["size2"]) == path
    assert (root(store, case["size1"]), root(store, case["size2"])) == (root1, root2)


# --- probes (transparency-dev/merkle testdata/), positive and negative --------------------------


@pytest.mark.parametrize("case", VECTORS["inclusion_probes"]["vectors"], ids=lambda c: c["file"])
def test_inclusion_probes(case: dict[str, Any]) -> None:
    args = (b64(case["leafHash"]), case["leafIdx"], case["treeSize"],
            b64_proof(case["proof"]), b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError) as info:
            verify_inclusion(*args)
        assert "\n" not in str(info.value) and str(info.value)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", VECTORS["consistency_probes"]["vectors"], ids=lambda c: c["file"])
def test_consistency_probes(case: dict[str, Any]) -> None:
    args = (case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]),
            b64_proof(case["proof"]))
    if case["wantErr"]:
        with pytest.raises(ProofError) as info:
            verify_consistency(*args)
        assert "\n" not in str(info.value) and str(info.value)
    else:
        verify_consistency(*args)


def test_probe_counts_and_size1_zero_policy() -> None:
    inclusion = VECTORS["inclusion_probes"]["vectors"]
    consistency = VECTORS["consistency_probes"]["vectors"]
    assert (len(inclusion), len(consistency)) == (98, 98)
    zero = {c["file"] for c in consistency if c["size1"] == 0}
    assert zero == set(VECTORS["consistency_probes"]["size1_zero_files"])
    assert all(c["wantErr"] for c in consistency if c["size1"] == 0)


# --- decisions outside the RFC's 0 < first < second ---------------------------------------------


def test_consistency_from_empty_tree_is_refused() -> None:
    store, _ = small_tree()
    for second in (0, 1, 5):
        with pytest.raises(ProofError, match="empty tree"):
            verify_consistency(0, second, EMPTY_ROOT, root(store, second), [])
    for second in (0, 1, 5):  # (0, 0) included: SUBPROOF would give an empty "proof"
        with pytest.raises(ValueError, match="no consistency proof from size 0"):
            consistency_proof(store, 0, second)


def test_consistency_of_equal_sizes() -> None:
    store, _ = small_tree()
    for n in (1, 2, 7, 64):
        assert consistency_proof(store, n, n) == []
        verify_consistency(n, n, root(store, n), root(store, n), [])
        with pytest.raises(ProofError, match="must be empty"):
            verify_consistency(n, n, root(store, n), root(store, n), [root(store, n)])
        with pytest.raises(ProofError, match="different roots"):
            verify_consistency(n, n, root(store, n), flip(root(store, n)), [])


def test_consistency_backwards_is_refused() -> None:
    store, _ = small_tree()
    proof = consistency_proof(store, 3, 9)
    with pytest.raises(ProofError, match="larger"):
        verify_consistency(9, 3, root(store, 9), root(store, 3), proof)
    with pytest.raises(ValueError):
        consistency_proof(store, 9, 3)


def test_inclusion_in_empty_tree_is_refused() -> None:
    store, _ = small_tree()
    with pytest.raises(ValueError):
        inclusion_proof(store, 0, 0)
    with pytest.raises(ProofError, match="not below"):
        verify_inclusion(leaf_hash(b""), 0, 0, [], EMPTY_ROOT)


def test_bad_arguments() -> None:
    store, _ = small_tree()
    for index, size in ((-1, 5), (5, 5), (6, 5)):
        with pytest.raises(ValueError):
            inclusion_proof(store, index, size)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(leaf_hash(b""), -1, 5, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match=">= 0"):
        verify_consistency(-1, 5, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(b"x" * 31, 0, 1, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="proof element 1 is 33 bytes"):
        verify_inclusion(leaf_hash(b""), 0, 4, [EMPTY_ROOT, b"x" * 33], EMPTY_ROOT)
    with pytest.raises(ProofError, match="first root is 31 bytes"):
        verify_consistency(2, 3, b"x" * 31, EMPTY_ROOT, [EMPTY_ROOT])
    # Roots that are only compared are not length-checked; they simply never match.
    with pytest.raises(ProofError, match="second root"):
        verify_consistency(1, 2, EMPTY_ROOT, b"", [EMPTY_ROOT])
    with pytest.raises(ProofError, match="expected root"):
        verify_inclusion(leaf_hash(b""), 0, 1, [], b"")
    with pytest.raises(ValueError):
        root(store, -1)
    with pytest.raises(ValueError):
        subtree_hash(store, 3, 2)
    with pytest.raises(ValueError):
        nodes_for_append(store, 0, b"short")
    assert issubclass(ProofError, ValueError)


def test_subtree_hash_of_every_range() -> None:
    """Aligned ranges read stored nodes; any other range is still the RFC's MTH of its leaves."""
    store, leaves = small_tree()
    for start in range(33):
        for end in range(start, 33):
            assert subtree_hash(store, start, end) == ref_mth(leaves[start:end]), (start, end)


def test_failure_reasons() -> None:
    store, leaves = small_tree()
    roots = small_roots()
    leaf, proof = leaf_hash(leaves[5]), inclusion_proof(store, 5, 13)
    with pytest.raises(ProofError, match="too long"):
        verify_inclusion(leaf, 5, 13, proof + [roots[13]], roots[13])
    with pytest.raises(ProofError, match="too short"):
        verify_inclusion(leaf, 5, 13, proof[:-1], roots[13])
    with pytest.raises(ProofError, match="expected root"):
        verify_inclusion(leaf, 5, 13, proof, roots[12])
    proof = consistency_proof(store, 6, 13)
    with pytest.raises(ProofError, match="too long"):
        verify_consistency(6, 13, roots[6], roots[13], proof + [roots[13]])
    with pytest.raises(ProofError, match="too short"):
        verify_consistency(6, 13, roots[6], roots[13], proof[:-1])
    with pytest.raises(ProofError, match="first root"):
        verify_consistency(6, 13, roots[5], roots[13], proof)
    with pytest.raises(ProofError, match="second root"):
        verify_consistency(6, 13, roots[6], roots[12], proof)
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(6, 13, roots[6], roots[13], [])


def test_store_refuses_rewriting_a_leaf() -> None:
    store = build(entries(5))
    with pytest.raises(ValueError, match="already stored"):
        append(store, 3, b"another entry")
    assert root(store, 5) == ref_mth(entries(5))
    # Writing the same value again is harmless.
    store.put_nodes([(0, 2, leaf_hash(b"entry 2"))])


def test_missing_nodes_raise_key_error() -> None:
    store = build(entries(5))
    with pytest.raises(KeyError):
        root(store, 6)


# --- every proof of every tree up to SMALL leaves ------------------------------------------------


def test_every_root_up_to_small() -> None:
    _, leaves = small_tree()
    assert small_roots() == [ref_mth(leaves[:n]) for n in range(SMALL + 1)]


def test_every_inclusion_proof_up_to_small() -> None:
    store, leaves = small_tree()
    roots = small_roots()
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(store, index, size)
            assert proof == ref_path(index, leaves[:size])
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, roots[size])


def test_every_consistency_proof_up_to_small() -> None:
    store, leaves = small_tree()
    roots = small_roots()
    for second in range(1, SMALL + 1):
        for first in range(1, second + 1):
            proof = consistency_proof(store, first, second)
            assert proof == ref_proof(first, leaves[:second])
            verify_consistency(first, second, roots[first], roots[second], proof)


# --- tampering ----------------------------------------------------------------------------------


def tampered(proof: list[bytes], extra: bytes) -> list[list[bytes]]:
    """Every element bit-flipped, truncated, extended at either end, and reversed."""
    out = [proof[:i] + [flip(p, 8 * i + 3)] + proof[i + 1:] for i, p in enumerate(proof)]
    out += [proof[:-1], proof[1:], proof + [extra], [extra] + proof]
    if len(proof) > 1:
        out.append(proof[::-1])
    return [p for p in out if p != proof]


def test_tampered_inclusion_proofs_fail() -> None:
    store, leaves = small_tree()
    roots = small_roots()
    for size in range(1, SMALL + 1):
        for index in range(size):
            leaf = leaf_hash(leaves[index])
            proof = inclusion_proof(store, index, size)
            for bad in tampered(proof, roots[size]):
                with pytest.raises(ProofError):
                    verify_inclusion(leaf, index, size, bad, roots[size])
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, proof, flip(roots[size]))
            with pytest.raises(ProofError):
                verify_inclusion(flip(leaf), index, size, proof, roots[size])


def test_inclusion_proof_with_wrong_index_or_size_fails() -> None:
    store, leaves = small_tree()
    roots = small_roots()
    for size in range(1, 25):
        for index in range(size):
            leaf = leaf_hash(leaves[index])
            proof = inclusion_proof(store, index, size)
            for other in range(size + 2):
                if other != index:
                    with pytest.raises(ProofError):
                        verify_inclusion(leaf, other, size, proof, roots[size])
            # A size is only meaningful with its own root, as in a signed tree head.
            for other in range(1, 33):
                if other != size:
                    with pytest.raises(ProofError):
                        verify_inclusion(leaf, index, other, proof, roots[other])


def test_tampered_consistency_proofs_fail() -> None:
    store, _ = small_tree()
    roots = small_roots()
    for second in range(2, SMALL + 1):
        for first in range(1, second):
            proof = consistency_proof(store, first, second)
            r1, r2 = roots[first], roots[second]
            for bad in tampered(proof, r1):
                with pytest.raises(ProofError):
                    verify_consistency(first, second, r1, r2, bad)
            with pytest.raises(ProofError):
                verify_consistency(first, second, flip(r1), r2, proof)
            with pytest.raises(ProofError):
                verify_consistency(first, second, r1, flip(r2), proof)
            with pytest.raises(ProofError):
                verify_consistency(first, second, r2, r1, proof)


def test_consistency_proof_with_wrong_sizes_fails() -> None:
    store, _ = small_tree()
    roots = small_roots()
    for second in range(2, 25):
        for first in range(1, second):
            proof = consistency_proof(store, first, second)
            for other in range(1, 33):
                if other != first:
                    with pytest.raises(ProofError):
                        verify_consistency(other, second, roots[other], roots[second], proof)
                if other != second:
                    with pytest.raises(ProofError):
                        verify_consistency(first, other, roots[first], roots[other], proof)


# --- random large trees against the reference ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_inclusion_in_large_trees(data: st.DataObject) -> None:
    store, leaves = large_tree()
    size = data.draw(st.integers(1, LARGE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    want_root = ref_mth(leaves[:size])
    assert root(store, size) == want_root
    proof = inclusion_proof(store, index, size)
    assert proof == ref_path(index, leaves[:size])
    leaf = leaf_hash(leaves[index])
    verify_inclusion(leaf, index, size, proof, want_root)
    other = data.draw(st.integers(0, size).filter(lambda i: i != index), label="other")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, other, size, proof, want_root)
    if proof:
        bad = list(proof)
        at = data.draw(st.integers(0, len(bad) - 1), label="tamper at")
        bad[at] = flip(bad[at], data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit"))
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, bad, want_root)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_consistency_in_large_trees(data: st.DataObject) -> None:
    store, leaves = large_tree()
    second = data.draw(st.integers(1, LARGE), label="second")
    first = data.draw(st.integers(1, second), label="first")
    root1, root2 = ref_mth(leaves[:first]), ref_mth(leaves[:second])
    proof = consistency_proof(store, first, second)
    assert proof == ref_proof(first, leaves[:second])
    verify_consistency(first, second, root1, root2, proof)
    if proof:
        bad = list(proof)
        at = data.draw(st.integers(0, len(bad) - 1), label="tamper at")
        bad[at] = flip(bad[at], data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit"))
        with pytest.raises(ProofError):
            verify_consistency(first, second, root1, root2, bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=40))
def test_random_entries_match_reference(leaves: list[bytes]) -> None:
    """Arbitrary entries, duplicates included: every prefix root and proof matches the RFC."""
    store = build(leaves)
    for n in range(len(leaves) + 1):
        assert root(store, n) == ref_mth(leaves[:n])
    n = len(leaves)
    for index in range(n):
        assert inclusion_proof(store, index, n) == ref_path(index, leaves)
    for first in range(1, n):
        assert consistency_proof(store, first, n) == ref_proof(first, leaves)


# --- cost: O(log n) node reads -------------------------------------------------------------------


def test_append_and_root_read_log_n_nodes() -> None:
    store = CountingStore()
    for n in range(5000):
        store.reads = store.writes = 0
        append(store, n, b"%d" % n)
        # Leaf n reads one left sibling per trailing one bit of n and writes one node more.
        assert store.reads <= 2 * (math.log2(n) if n else 0.0) + 2, n
        assert store.reads <= math.log2(n + 1), n
        assert store.writes == store.reads + 1, n
        store.reads = 0
        root(store, n + 1)
        assert store.reads <= math.log2(n + 1) + 1, n
    # Amortised: fewer than two nodes stored per leaf.
    assert len(store.nodes) < 2 * 5000


def test_nodes_for_append_writes_nothing() -> None:
    store = build(entries(7))
    before = dict(store.nodes)
    nodes = nodes_for_append(store, 7, leaf_hash(b"entry 7"))
    assert store.nodes == before
    # Leaf 7 completes [6, 8), [4, 8) and [0, 8).
    assert [(level, index) for level, index, _ in nodes] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert nodes[-1][2] == ref_mth(entries(8))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proofs_read_log_n_nodes(data: st.DataObject) -> None:
    store = CountingStore()
    store.nodes = large_tree()[0].nodes  # shared, only read
    second = data.draw(st.integers(1, LARGE), label="size")
    bound = 2 * math.log2(second) + 2
    index = data.draw(st.integers(0, second - 1), label="index")
    inclusion_proof(store, index, second)
    assert store.reads <= bound
    store.reads = 0
    first = data.draw(st.integers(1, second), label="first")
    consistency_proof(store, first, second)
    assert store.reads <= bound


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=16), max_size=300))
def test_compact_range_gives_every_prefix_root(leaves: list[bytes]) -> None:
    from issuer.log.merkle import CompactRange

    frontier = CompactRange()
    assert frontier.root() == EMPTY_ROOT
    for n, data in enumerate(leaves, start=1):
        frontier.append(leaf_hash(data))
        assert frontier.root() == ref_mth(leaves[:n])
        assert frontier.size == n
