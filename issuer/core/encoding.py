"""Byte-exact encodings shared by statements, templates and the audit log."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


#: One encoder for every call (``json.dumps`` with options builds a new one each time).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8.

    Used wherever two parties must hash the same bytes (template digests, audit entries).
    """
    return _CANONICAL.encode(value).encode("utf-8")


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises ValueError on anything but base64url characters."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    if len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, the digest format of statements (docs/audit.md)."""
    return hashlib.sha256(data).hexdigest()


def statement_digest(compact_jws: str) -> str:
    """A statement's digest (docs/audit.md): lowercase hex SHA-256 of the compact serialization's ASCII bytes."""
    return sha256_hex(compact_jws.encode("ascii"))


_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                       "OKP": ("crv", "kty", "x")}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 section 3: SHA-256 over the required members in lexicographic order."""
    try:
        members = _THUMBPRINT_MEMBERS[jwk["kty"]]
        required = {name: jwk[name] for name in members}
    except KeyError as exc:
        raise ValueError(f"JWK lacks a member needed for its thumbprint: {exc}") from None
    return b64url(hashlib.sha256(canonical_json(required)).digest())
