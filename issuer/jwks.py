"""Reading a JWK Set a verifier was pointed at: a local file or an https URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import is_loopback_host
from .errors import InvalidRequest, UsageError

MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10.0


def parse_jwks(body: bytes, source: str) -> dict[str, Any]:
    """A JSON object with a ``keys`` array (RFC 7517 section 5), or a clear error."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"{source}: not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InvalidRequest(f"{source}: not a JWK Set (no 'keys' array)")
    return value


def fetch_jwks(url: str, timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    """GET a JWKS over https (or http on loopback), bounded in time and size."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname or "")):
        raise UsageError(f"{url}: JWKS URLs must use https (http only on localhost)")
    request = urllib.request.Request(url, headers={"Accept": "application/jwk-set+json, "
                                                             "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_JWKS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise InvalidRequest(f"cannot fetch JWKS from {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidRequest(f"cannot fetch JWKS from {url}: {reason}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise InvalidRequest(f"{url}: JWKS larger than {MAX_JWKS_BYTES} bytes")
    return parse_jwks(body, url)


def load_jwks(source: str) -> dict[str, Any]:
    """``--jwks FILE|URL``."""
    if source.startswith(("https://", "http://")):
        return fetch_jwks(source)
    try:
        body = Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read JWKS file {source}: {exc.strerror}") from None
    return parse_jwks(body, source)
