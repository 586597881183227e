"""Token Status List encoding (draft-ietf-oauth-status-list-20) against the draft's vectors.

The vectors (tests/fixtures/vectors/status_list.json, provenance in its README) are
authoritative: every example is decoded and re-encoded. ``zlib.compress`` at level 9 reproduces
every published ``lst`` byte for byte (checked with zlib 1.2.13), so the tests compare ``lst``
exactly as well as the decompressed byte arrays.
"""

from __future__ import annotations

import base64
import json
import random
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from issuer.core.encoding import b64url, b64url_decode
from issuer.status.statuslist import (
    ALLOWED_BITS,
    COMPRESSION_LEVEL,
    INVALID,
    MAX_DECOMPRESSED_BYTES,
    SUSPENDED,
    VALID,
    StatusList,
    StatusListError,
)
from tests.conftest import vector

VECTORS = vector("status_list.json")
EXAMPLES = VECTORS["examples"]  # section 4.1, with byte arrays and zlib hex
TEST_VECTORS = VECTORS["test_vectors"]  # appendix: 1-, 2-, 4- and 8-bit lists of 2^20 entries
JWT_EXAMPLE = VECTORS["status_list_token_jwt_example"]


def size_of(case: dict[str, Any]) -> int:
    return int(case.get("size_entries") or case["num_statuses"])


def reference_bytes(statuses: dict[int, int], size: int, bits: int) -> bytes:
    """Independent packing: index i's status at bit i*bits of a little-endian integer."""
    value = sum(status << (index * bits) for index, status in statuses.items())
    return value.to_bytes((size * bits + 7) // 8, "little")


def listed(case: dict[str, Any]) -> dict[int, int]:
    statuses = {s["index"]: s["value"] for s in case["statuses"]}
    assert len(statuses) == len(case["statuses"])  # no index listed twice
    return statuses


def one_line_error(excinfo: pytest.ExceptionInfo[StatusListError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- published vectors

def test_vectors_cover_every_bit_size() -> None:
    assert sorted(v["bits"] for v in TEST_VECTORS) == [1, 2, 4, 8]
    assert sorted(e["bits"] for e in EXAMPLES) == [1, 2]


@pytest.mark.parametrize("case", EXAMPLES + TEST_VECTORS, ids=lambda c: c["name"])
def test_decoding_yields_the_listed_statuses(case: dict[str, Any]) -> None:
    bits, size, statuses = case["bits"], size_of(case), listed(case)
    decoded = StatusList.decode(case["lst"], bits, size)
    assert (decoded.size, decoded.bits) == (size, bits)
    for index, status in statuses.items():
        assert decoded.get(index) == status, index
    # Every unlisted index is VALID (the appendix's default): compare the whole array.
    assert decoded.to_bytes() == reference_bytes(statuses, size, bits)
    # Without a size, the list spans the whole decompressed array (here: the same size).
    assert StatusList.decode(case["lst"], bits).size == size


@pytest.mark.parametrize("case", EXAMPLES + TEST_VECTORS, ids=lambda c: c["name"])
def test_encoding_reproduces_the_published_lst(case: dict[str, Any]) -> None:
    bits, size = case["bits"], size_of(case)
    status_list = StatusList(size, bits)
    for index, status in listed(case).items():
        status_list.set(index, status)
    published_raw = zlib.decompress(b64url_decode(case["lst"]))
    assert status_list.to_bytes() == published_raw
    # Level 9 reproduces the draft's compressor output exactly (zlib 1.2.13). Should another
    # zlib build ever differ, the decompressed comparison above is the one that matters.
    assert status_list.encode() == case["lst"]
    assert status_list.to_json() == case["status_list_json"] == {"bits": bits, "lst": case["lst"]}


@pytest.mark.parametrize("case", EXAMPLES, ids=lambda c: c["name"])
def test_section_4_1_byte_arrays_and_zlib_bytes(case: dict[str, Any]) -> None:
    status_list = StatusList(case["num_statuses"], case["bits"])
    for index, status in listed(case).items():
        status_list.set(index, status)
    raw = status_list.to_bytes()
    assert raw == bytes(int(h, 16) for h in case["byte_array_hex_as_published"])
    assert raw == bytes(int(h, 16) for h in case["byte_array_hex_from_figure"])
    assert zlib.compress(raw, COMPRESSION_LEVEL).hex() == case["compressed_zlib_hex"]
    assert b64url_decode(case["lst"]).hex() == case["compressed_zlib_hex"]
    # The CBOR example carries the same compressed bytes as its lst byte string.
    assert case["cbor_status_list_hex"].endswith(case["compressed_zlib_hex"])


@pytest.mark.parametrize("case", EXAMPLES + TEST_VECTORS, ids=lambda c: c["name"])
def test_json_form_round_trips(case: dict[str, Any]) -> None:
    obj = case["status_list_json"]
    decoded = StatusList.from_json(obj, size_of(case))
    assert decoded.to_json() == obj
    assert decoded.aggregation_uri is None
    assert StatusList.from_json(json.loads(json.dumps(obj))).to_bytes() == decoded.to_bytes()


def test_status_list_token_jwt_payload() -> None:
    """The status_list claim of the draft's Status List Token (signature not checked: no key)."""
    header_b64, payload_b64, signature_b64 = JWT_EXAMPLE["compact_jwt"].split(".")
    header = json.loads(b64url_decode(header_b64))
    payload = json.loads(b64url_decode(payload_b64))
    assert header == JWT_EXAMPLE["header"] and header["typ"] == "statuslist+jwt"
    assert len(b64url_decode(signature_b64)) == 64  # ES256: r || s
    # The compact form adds "iss" to the pretty-printed payload; everything else is equal.
    assert {k: v for k, v in payload.items() if k != "iss"} == JWT_EXAMPLE["payload"]
    assert payload["iss"] == "https://example.com"

    status_list = StatusList.from_json(payload["status_list"])
    assert status_list.to_json() == payload["status_list"]
    first = EXAMPLES[0]
    assert status_list.bits == first["bits"] and status_list.size == first["num_statuses"]
    for index, status in listed(first).items():
        assert status_list.get(index) == status


# --------------------------------------------------------------------------- layout and API

def test_constants() -> None:
    assert (VALID, INVALID, SUSPENDED) == (0, 1, 2)
    assert ALLOWED_BITS == (1, 2, 4, 8)
    assert issubclass(StatusListError, ValueError)


def test_new_list_is_all_valid() -> None:
    for bits in ALLOWED_BITS:
        status_list = StatusList(13, bits)
        assert len(status_list) == status_list.size == 13 and status_list.bits == bits
        assert status_list.to_bytes() == bytes((13 * bits + 7) // 8)
        assert all(status_list.get(i) == VALID for i in range(13))
    assert StatusList(0, 1).to_bytes() == b""
    assert StatusList.decode(StatusList(0, 1).encode(), 1).size == 0


def test_bit_layout_counts_from_the_least_significant_bit() -> None:
    two = StatusList(4, 2)
    two.set(1, SUSPENDED)  # bits 2-3 of byte 0
    assert two.to_bytes() == bytes([0b0000_1000])
    two.set(3, 3)  # bits 6-7
    assert two.to_bytes() == bytes([0b1100_1000])
    two.set(1, VALID)
    assert two.to_bytes() == bytes([0b1100_0000]) and two.get(3) == 3

    four = StatusList(3, 4)
    four.set(0, 0xA)
    four.set(1, 0x5)
    four.set(2, 0xF)
    assert four.to_bytes() == bytes([0x5A, 0x0F])

    one = StatusList(9, 1)
    one.set(8, INVALID)
    assert one.to_bytes() == bytes([0x00, 0x01])


def test_aggregation_uri_round_trips() -> None:
    status_list = StatusList(8, 1, aggregation_uri="https://example.com/statuslists")
    obj = status_list.to_json()
    assert obj["aggregation_uri"] == "https://example.com/statuslists"
    assert StatusList.from_json(obj).aggregation_uri == "https://example.com/statuslists"
    unknown_members = dict(obj, extra=1)
    assert StatusList.from_json(unknown_members).to_json() == obj


@pytest.mark.parametrize("level", range(0, 10))
def test_decoding_accepts_any_compression_level(level: int) -> None:
    raw = reference_bytes({0: 1, 77: 3, 499: 2}, 500, 2)
    lst = b64url(zlib.compress(raw, level))
    assert StatusList.decode(lst, 2, 500).to_bytes() == raw


@pytest.mark.parametrize("strategy", [zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED,
                                      zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED])
@pytest.mark.parametrize("wbits", [9, 12, 15])
def test_decoding_accepts_any_zlib_stream(strategy: int, wbits: int) -> None:
    raw = bytes(random.Random(wbits * 10 + strategy).randrange(4) for _ in range(3000))
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits, 9, strategy)
    lst = b64url(compressor.compress(raw) + compressor.flush())
    assert StatusList.decode(lst, 8).to_bytes() == raw


# --------------------------------------------------------------------------- rejections

@pytest.mark.parametrize("bits", [0, 3, 5, 16, -1, True, "1", 1.0, None])
def test_invalid_bits_are_rejected(bits: Any) -> None:
    lst = EXAMPLES[0]["lst"]
    calls: list[Callable[[], object]] = [
        lambda: StatusList(8, bits),
        lambda: StatusList.decode(lst, bits),
        lambda: StatusList.from_json({"bits": bits, "lst": lst}),
    ]
    for call in calls:
        with pytest.raises(StatusListError, match="bits") as excinfo:
            call()
        one_line_error(excinfo)


@pytest.mark.parametrize("lst", [
    "eNrbuRgAAhcBXQ==",  # padding
    "eNrbuRgAAhcBXR",  # non-canonical trailing bits
    "eNrbuRgAAhcBX",  # impossible length
    "eNrb+RgAAhcBXQ",  # standard, not url-safe, alphabet
    "eNrb uRgAAhcBXQ",
    "eNrbuRgAAhcBXQ\n",
    "é",
])
def test_bad_base64url_is_rejected(lst: str) -> None:
    with pytest.raises(StatusListError, match="base64url") as excinfo:
        StatusList.decode(lst, 1)
    one_line_error(excinfo)


def zlib_variants() -> dict[str, bytes]:
    raw = bytes([0xB9, 0xA3])
    good = zlib.compress(raw, 9)
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    gzip = zlib.compressobj(9, zlib.DEFLATED, 31)
    return {
        "not zlib": b"not a zlib stream",
        "bad checksum": good[:-1] + bytes([good[-1] ^ 1]),
        "raw deflate": raw_deflate.compress(raw) + raw_deflate.flush(),
        "gzip": gzip.compress(raw) + gzip.flush(),
        "truncated": good[:-3],
        "trailing data": good + b"\x00",
        "two streams": good + good,
        "empty": b"",
    }


@pytest.mark.parametrize("name", sorted(zlib_variants()))
def test_bad_zlib_data_is_rejected(name: str) -> None:
    lst = b64url(zlib_variants()[name])
    with pytest.raises(StatusListError, match="zlib") as excinfo:
        StatusList.decode(lst, 1)
    one_line_error(excinfo)


@pytest.mark.parametrize("obj", [None, [], "eNrbuRgAAhcBXQ", 1, ["bits", "lst"], b"{}"])
def test_non_object_input_is_rejected(obj: Any) -> None:
    with pytest.raises(StatusListError, match="JSON object") as excinfo:
        StatusList.from_json(obj)
    one_line_error(excinfo)


@pytest.mark.parametrize("obj", [
    {}, {"bits": 1}, {"lst": "eNrbuRgAAhcBXQ"},
    {"bits": 1, "lst": 5}, {"bits": 1, "lst": None}, {"bits": 1, "lst": ["eNrbuRgAAhcBXQ"]},
    {"bits": 1, "lst": "eNrbuRgAAhcBXQ", "aggregation_uri": 7},
])
def test_malformed_json_objects_are_rejected(obj: Any) -> None:
    with pytest.raises(StatusListError) as excinfo:
        StatusList.from_json(obj)
    one_line_error(excinfo)


def test_size_must_match_the_byte_array() -> None:
    lst = EXAMPLES[0]["lst"]  # 2 bytes: 16 one-bit entries
    assert StatusList.decode(lst, 1, 16).size == 16
    assert StatusList.decode(lst, 2, 8).size == 8  # same bytes, read as 2-bit entries
    for size in (8, 17, 100):
        with pytest.raises(StatusListError, match="expected"):
            StatusList.decode(lst, 1, size)
    # 9..15 entries also need 2 bytes, but index 15 (beyond the size) is set.
    with pytest.raises(StatusListError, match="beyond its size"):
        StatusList.decode(lst, 1, 15)
    assert StatusList.decode(b64url(zlib.compress(b"\x00\x7f")), 1, 15).get(14) == 1
    # the JSON form passes the size on (the mutants that dropped it read 16 entries)
    assert StatusList.from_json({"bits": 1, "lst": lst}, 16).size == 16
    for size in (8, 15, 100):
        with pytest.raises(StatusListError, match="expected|beyond its size"):
            StatusList.from_json({"bits": 1, "lst": lst}, size)
    for bad_size in (-1, True, "16", 1.5):
        with pytest.raises(StatusListError, match="size"):
            StatusList.decode(lst, 1, bad_size)  # type: ignore[arg-type]
        with pytest.raises(StatusListError, match="size"):
            StatusList(bad_size, 1)  # type: ignore[arg-type]


def test_a_size_or_cap_that_is_not_an_integer_is_named_with_its_type() -> None:
    lst = EXAMPLES[0]["lst"]
    for value, kind in ((True, "bool"), ("16", "str"), (1.5, "float")):
        with pytest.raises(StatusListError, match=f"^size must be an integer, got {kind}$"):
            StatusList.decode(lst, 1, value)  # type: ignore[arg-type]
        with pytest.raises(StatusListError, match=f"^max_bytes must be an integer, got {kind}$"):
            StatusList.decode(lst, 1, max_bytes=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [-1, 16, 17, 10**9, True, "0", 1.0])
def test_index_out_of_range_is_rejected(index: Any) -> None:
    status_list = StatusList(16, 2)
    with pytest.raises(StatusListError, match="index") as excinfo:
        status_list.get(index)
    one_line_error(excinfo)
    with pytest.raises(StatusListError, match="index"):
        status_list.set(index, VALID)
    assert status_list.to_bytes() == bytes(4)


@pytest.mark.parametrize(("bits", "status"), [(1, 2), (1, SUSPENDED), (2, 4), (4, 16),
                                              (8, 256), (8, -1), (2, True), (4, "1")])
def test_status_too_large_is_rejected(bits: int, status: Any) -> None:
    status_list = StatusList(8, bits)
    with pytest.raises(StatusListError, match="status") as excinfo:
        status_list.set(3, status)
    one_line_error(excinfo)
    assert status_list.to_bytes() == bytes(bits)


# --------------------------------------------------------------------------- decompression cap

def stream_of_zeros(total: int, chunk: int = 1 << 20) -> bytes:
    """Compress ``total`` zero bytes without ever holding them: a zlib bomb."""
    compressor = zlib.compressobj(9)
    zeros = bytes(chunk)
    parts = [compressor.compress(zeros) for _ in range(total // chunk)]
    return b"".join(parts) + compressor.flush()


@pytest.fixture(scope="module")
def bomb() -> str:
    return b64url(stream_of_zeros(100 * 1024 * 1024))  # 100 MiB of zeros, ~100 KB compressed


def test_zlib_bomb_is_rejected_without_allocating_it(bomb: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(StatusListError, match="more than 16777216 bytes") as excinfo:
            StatusList.decode(bomb, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line_error(excinfo)
    assert MAX_DECOMPRESSED_BYTES == 16 * 1024 * 1024
    # The cap plus one byte is inflated at most; never anything near 100 MiB.
    assert peak < 3 * MAX_DECOMPRESSED_BYTES, peak
    with pytest.raises(StatusListError, match="more than 1024 bytes"):
        StatusList.from_json({"bits": 8, "lst": bomb}, max_bytes=1024)


def test_cap_is_configurable_and_inclusive() -> None:
    lst = b64url(zlib.compress(bytes(1000)))
    assert StatusList.decode(lst, 8, max_bytes=1000).size == 1000
    with pytest.raises(StatusListError, match="more than 999 bytes"):
        StatusList.decode(lst, 8, max_bytes=999)
    # A declared size beyond the cap is refused before anything is inflated.
    with pytest.raises(StatusListError, match="exceeds the cap"):
        StatusList.decode(lst, 8, 1001, max_bytes=1000)
    assert StatusList.decode(lst, 8, 1000, max_bytes=1000).size == 1000  # the cap is inclusive
    # zero is a size and a cap like any other: an empty list fits a cap of nothing
    empty = b64url(zlib.compress(b""))
    assert StatusList.decode(empty, 1, 0, max_bytes=0).size == 0
    assert StatusList.decode(empty, 8, max_bytes=0).size == 0
    assert StatusList(0, 1).size == 0 and StatusList.from_bytes(b"", 1, 0).size == 0
    with pytest.raises(StatusListError, match="max_bytes"):
        StatusList.decode(lst, 8, max_bytes=-1)


# --------------------------------------------------------------------------- properties

@st.composite
def random_lists(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    bits = draw(st.sampled_from(ALLOWED_BITS))
    size = draw(st.integers(1, 5000))
    rnd = draw(st.randoms(use_true_random=False))
    density = draw(st.sampled_from([0.0, 0.01, 0.5, 1.0]))
    statuses = [rnd.randrange(1 << bits) if rnd.random() < density else VALID
                for _ in range(size)]
    return bits, size, statuses


@settings(max_examples=100, deadline=None)
@given(random_lists())
def test_random_lists_round_trip(case: tuple[int, int, list[int]]) -> None:
    bits, size, statuses = case
    status_list = StatusList(size, bits)
    for index, status in enumerate(statuses):
        if status:
            status_list.set(index, status)
    raw = status_list.to_bytes()
    assert raw == reference_bytes(dict(enumerate(statuses)), size, bits)
    assert [status_list.get(i) for i in range(size)] == statuses

    decoded = StatusList.decode(status_list.encode(), bits, size)
    assert decoded.to_bytes() == raw and decoded.size == size
    assert [decoded.get(i) for i in range(size)] == statuses
    from_json = StatusList.from_json(json.loads(json.dumps(status_list.to_json())), size)
    assert from_json.to_bytes() == raw
    # Without a size, the decoded list is rounded up to whole bytes, padded with VALID.
    unsized = StatusList.decode(status_list.encode(), bits)
    assert unsized.size == len(raw) * 8 // bits >= size
    assert all(unsized.get(i) == VALID for i in range(size, unsized.size))


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from(ALLOWED_BITS), size=st.integers(0, 300), index=st.integers(),
       status=st.integers())
def test_get_and_set_check_their_ranges(bits: int, size: int, index: int, status: int) -> None:
    status_list = StatusList(size, bits)
    index_ok = 0 <= index < size
    status_ok = 0 <= status < (1 << bits)
    if index_ok:
        assert status_list.get(index) == VALID
    else:
        with pytest.raises(StatusListError, match="index"):
            status_list.get(index)
    if index_ok and status_ok:
        status_list.set(index, status)
        assert status_list.get(index) == status
    else:
        with pytest.raises(StatusListError):
            status_list.set(index, status)
        assert status_list.to_bytes() == bytes(len(status_list.to_bytes()))


@settings(max_examples=300, deadline=None)
@given(lst=st.text(max_size=200), bits=st.one_of(st.sampled_from(ALLOWED_BITS), st.integers()),
       size=st.none() | st.integers(-5, 2000))
def test_arbitrary_strings_raise_only_status_list_error(lst: str, bits: int,
                                                        size: int | None) -> None:
    try:
        StatusList.decode(lst, bits, size)
    except StatusListError as exc:
        assert "\n" not in str(exc)


_b64url_alphabet = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=200)


@settings(max_examples=300, deadline=None)
@given(lst=_b64url_alphabet | st.binary(max_size=150).map(lambda b: b64url(b"\x78\xda" + b)),
       bits=st.sampled_from(ALLOWED_BITS))
def test_arbitrary_base64url_raises_only_status_list_error(lst: str, bits: int) -> None:
    try:
        decoded = StatusList.decode(lst, bits, max_bytes=1 << 16)
    except StatusListError as exc:
        assert "\n" not in str(exc)
    else:
        assert zlib.decompress(base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))) \
            == decoded.to_bytes()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(obj=_json | st.fixed_dictionaries(
    {"bits": _json | st.sampled_from(ALLOWED_BITS),
     "lst": _json | st.sampled_from([e["lst"] for e in EXAMPLES])},
    optional={"aggregation_uri": _json | st.text(max_size=20)}))
def test_arbitrary_json_raises_only_status_list_error(obj: Any) -> None:
    try:
        StatusList.from_json(obj)
    except StatusListError as exc:
        assert "\n" not in str(exc)
