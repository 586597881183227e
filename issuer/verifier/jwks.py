"""Reading a JWK Set from a file (``issuer verify --jwks FILE``).

A JWKS at a URL is fetched by :class:`issuer.verifier.remote.RemoteJwks`, with HTTP caching and bounds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from issuer.core.errors import InvalidRequest, UsageError


def parse_jwks(body: bytes, source: str) -> dict[str, Any]:
    """A JSON object with a ``keys`` array (RFC 7517 section 5), or a clear error."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"{source}: not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InvalidRequest(f"{source}: not a JWK Set (no 'keys' array)")
    return value


def load_jwks(path: str) -> dict[str, Any]:
    """``--jwks FILE``."""
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read JWKS file {path}: {exc.strerror}") from None
    return parse_jwks(body, path)
