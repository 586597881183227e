"""The IETF Token Status List encoding (draft-ietf-oauth-status-list-20).

A *Status List* (draft section 4, "Status List") is a byte array holding one status per
Referenced Token, each ``bits`` wide, where ``bits`` is 1, 2, 4 or 8. The status of index ``i``
lives in byte ``floor(i * bits / 8)``, at bit offset ``(i * bits) % 8`` counted from the least
significant bit, so a status never straddles two bytes. With ``bits = 1`` the statuses
``1 0 0 1 1 1 0 1`` of indices 0..7 form the byte ``0b10111001 = 0xB9``: index 0 is the lowest
bit. With ``bits = 2`` byte 0 holds indices 0 (bits 0-1), 1 (bits 2-3), 2 (bits 4-5) and
3 (bits 6-7). The array is ``ceil(size * bits / 8)`` bytes long; unused high bits of the last
byte are zero.

Section 4.1, "Compressed Byte Array": the array is compressed with DEFLATE (RFC 1951) in the
ZLIB format (RFC 1950), at the highest compression level (RECOMMENDED). ``zlib.compress`` at
level 9 (:data:`COMPRESSION_LEVEL`) reproduces every ``lst`` published in the draft byte for
byte. Decoding accepts any valid zlib stream, whatever level or strategy produced it.

Section 4.2, "Status List in JSON Format": the JSON object ``{"bits": N, "lst": "..."}``, where
``lst`` is the compressed array in base64url without padding (RFC 7515 section 2). It may also
carry an ``aggregation_uri`` string, which is kept.

Section 7, "Status Types": 0x00 VALID, 0x01 INVALID, 0x02 SUSPENDED, 0x03 application
specific. A status takes all ``bits`` bits of its entry, so with ``bits = 1`` only VALID and
INVALID can be represented.

Decoding is defensive: the decompressed size is capped (:data:`MAX_DECOMPRESSED_BYTES` unless
the caller chooses another cap), so a small ``lst`` can't expand into a zip bomb. Every
rejection is a :class:`StatusListError` with a one-line message.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Mapping
from typing import Any

from issuer.core.encoding import b64url, b64url_decode

VALID = 0
INVALID = 1
SUSPENDED = 2
APPLICATION_SPECIFIC = 3

ALLOWED_BITS = (1, 2, 4, 8)

#: zlib level that reproduces the draft's published ``lst`` values (the highest level).
COMPRESSION_LEVEL = 9

#: Default cap on the decompressed byte array: 16 MiB (2^27 entries at 1 bit).
MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024


class StatusListError(ValueError):
    """A Status List is malformed, or an index or status is out of range."""

    def __init__(self, message: str) -> None:
        # One line, always: messages end up in logs and JSON error bodies.
        super().__init__(" ".join(str(message).split()))


def _check_bits(bits: object) -> int:
    """Return ``bits`` if it is one of :data:`ALLOWED_BITS`, else raise."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS:
        raise StatusListError(f"bits must be one of 1, 2, 4 or 8, got {bits!r:.40}")
    return bits


def _check_int(value: object, name: str) -> int:
    """Return ``value`` if it is a (non-bool) int, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatusListError(f"{name} must be an integer, got {type(value).__name__}")
    return value


def _byte_length(size: int, bits: int) -> int:
    """Length of the byte array holding ``size`` entries of ``bits`` bits."""
    return (size * bits + 7) // 8


def _decode_base64url(lst: object) -> bytes:
    """Strict base64url without padding: only the canonical encoding is accepted."""
    if not isinstance(lst, str):
        raise StatusListError(f"lst must be a string, got {type(lst).__name__}")
    try:
        data = b64url_decode(lst)
    except (ValueError, binascii.Error):
        raise StatusListError("lst is not base64url without padding") from None
    if b64url(data) != lst:  # non-zero trailing bits: a second spelling of the same bytes
        raise StatusListError("lst is not canonical base64url")
    return data


def _decompress(data: bytes, max_bytes: int) -> bytes:
    """Inflate one complete ZLIB stream, refusing to produce more than ``max_bytes`` bytes."""
    inflater = zlib.decompressobj()
    try:
        # max_length=0 would mean "unlimited", hence the + 1 (which also detects overflow).
        raw = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        raise StatusListError("lst is not valid zlib data") from None
    if len(raw) > max_bytes:
        raise StatusListError(f"lst decompresses to more than {max_bytes} bytes")
    if not inflater.eof:
        raise StatusListError("lst is a truncated zlib stream")
    if inflater.unused_data:
        raise StatusListError("lst has trailing data after the zlib stream")
    return raw


class StatusList:
    """A mutable Status List of ``size`` entries, ``bits`` bits each, all VALID initially."""

    __slots__ = ("_size", "_bits", "_data", "aggregation_uri")

    def __init__(self, size: int, bits: int, *, aggregation_uri: str | None = None) -> None:
        self._bits = _check_bits(bits)
        self._size = _check_int(size, "size")
        if size < 0:
            raise StatusListError(f"size must not be negative, got {size}")
        if aggregation_uri is not None and not isinstance(aggregation_uri, str):
            raise StatusListError("aggregation_uri must be a string")
        self._data = bytearray(_byte_length(size, bits))
        self.aggregation_uri = aggregation_uri

    @property
    def size(self) -> int:
        """Number of entries (indices ``0 .. size - 1``)."""
        return self._size

    @property
    def bits(self) -> int:
        """Bits per entry: 1, 2, 4 or 8."""
        return self._bits

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"StatusList(size={self._size}, bits={self._bits})"

    def _locate(self, index: object) -> tuple[int, int]:
        """Byte position and bit shift of ``index``, after a range check."""
        index = _check_int(index, "index")
        if not 0 <= index < self._size:
            raise StatusListError(f"index {index} is outside the status list [0, {self._size})")
        offset = index * self._bits
        return offset >> 3, offset & 7

    def get(self, index: int) -> int:
        """The status at ``index``."""
        position, shift = self._locate(index)
        return (self._data[position] >> shift) & ((1 << self._bits) - 1)

    def set(self, index: int, status: int) -> None:
        """Set the status at ``index``; ``status`` must fit in ``bits`` bits."""
        position, shift = self._locate(index)
        status = _check_int(status, "status")
        mask = (1 << self._bits) - 1
        if not 0 <= status <= mask:
            raise StatusListError(
                f"status {status} does not fit in {self._bits} bit(s) (max {mask})")
        self._data[position] = (self._data[position] & ~(mask << shift)) | (status << shift)

    def to_bytes(self) -> bytes:
        """The uncompressed byte array, ``ceil(size * bits / 8)`` bytes long."""
        return bytes(self._data)

    def encode(self, level: int = COMPRESSION_LEVEL) -> str:
        """The ``lst`` value: ZLIB-compressed byte array, base64url without padding."""
        return b64url(zlib.compress(bytes(self._data), level))

    def to_json(self) -> dict[str, Any]:
        """The JSON form (draft section 4.2): ``{"bits", "lst"}`` and ``aggregation_uri`` if set."""
        obj: dict[str, Any] = {"bits": self._bits, "lst": self.encode()}
        if self.aggregation_uri is not None:
            obj["aggregation_uri"] = self.aggregation_uri
        return obj

    @classmethod
    def from_bytes(cls, raw: bytes, bits: int, size: int | None = None) -> StatusList:
        """A Status List over an uncompressed byte array.

        Without ``size`` every bit of ``raw`` is an entry (``len(raw) * 8 // bits`` entries).
        With ``size``, ``raw`` must be exactly ``ceil(size * bits / 8)`` bytes long and the
        unused bits of its last byte must be zero.
        """
        bits = _check_bits(bits)
        if not isinstance(raw, (bytes, bytearray)):
            raise StatusListError(f"raw must be bytes, got {type(raw).__name__}")
        if size is None:
            size = len(raw) * 8 // bits
        size = _check_int(size, "size")
        if size < 0:
            raise StatusListError(f"size must not be negative, got {size}")
        expected = _byte_length(size, bits)
        if len(raw) != expected:
            raise StatusListError(
                f"status list holds {len(raw)} bytes, expected {expected} for size {size}")
        spare = expected * 8 - size * bits
        if spare and raw[-1] >> (8 - spare):
            raise StatusListError("status list has non-zero bits beyond its size")
        status_list = cls(0, bits)
        status_list._size = size
        status_list._data = bytearray(raw)
        return status_list

    @classmethod
    def decode(cls, lst: str, bits: int, size: int | None = None, *,
               max_bytes: int = MAX_DECOMPRESSED_BYTES) -> StatusList:
        """Decode an ``lst`` value (see :meth:`from_bytes` for ``size``).

        At most ``max_bytes`` bytes are decompressed; a larger array is rejected.
        """
        bits = _check_bits(bits)
        max_bytes = _check_int(max_bytes, "max_bytes")
        if max_bytes < 0:
            raise StatusListError(f"max_bytes must not be negative, got {max_bytes}")
        if size is not None:
            size = _check_int(size, "size")
            if size < 0:
                raise StatusListError(f"size must not be negative, got {size}")
            if _byte_length(size, bits) > max_bytes:
                raise StatusListError(f"size {size} exceeds the cap of {max_bytes} bytes")
        raw = _decompress(_decode_base64url(lst), max_bytes)
        return cls.from_bytes(raw, bits, size)

    @classmethod
    def from_json(cls, obj: object, size: int | None = None, *,
                  max_bytes: int = MAX_DECOMPRESSED_BYTES) -> StatusList:
        """Decode the JSON form ``{"bits": N, "lst": "...", "aggregation_uri"?: "..."}``.

        Other members are ignored.
        """
        if not isinstance(obj, Mapping):
            raise StatusListError(f"status list must be a JSON object, got {type(obj).__name__}")
        if "bits" not in obj or "lst" not in obj:
            raise StatusListError("status list must have both bits and lst")
        aggregation_uri = obj.get("aggregation_uri")
        if aggregation_uri is not None and not isinstance(aggregation_uri, str):
            raise StatusListError("aggregation_uri must be a string")
        status_list = cls.decode(obj["lst"], obj["bits"], size, max_bytes=max_bytes)
        status_list.aggregation_uri = aggregation_uri
        return status_list
