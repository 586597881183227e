"""What a verifier fetches from an issuer: Token Status Lists (and, with them, the HTTP rules).

:class:`StatusListClient` fetches a ``statuslist+jwt`` (draft-ietf-oauth-status-list section
8, "Status List Request"), verifies its signature with the issuer's JWKS, checks ``typ``,
``sub``, ``iss``, ``iat`` and ``exp``, and keeps the decoded list for ``ttl`` seconds, so one
cached document answers for every statement on the list.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import statuslist
from .clock import Clock, SystemClock
from .config import is_loopback_host
from .errors import InvalidSoftwareStatement

STATUSLIST_TYP = "statuslist+jwt"
STATUSLIST_ACCEPT = "application/statuslist+jwt"
MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024
FETCH_TIMEOUT = 10.0
#: Used when a list carries no ``ttl``: short, so a revocation is not missed for long.
DEFAULT_TTL = 300

Fetch = Callable[[str], bytes]


def invalid(reason: str) -> InvalidSoftwareStatement:
    return InvalidSoftwareStatement(f"software statement rejected: {reason}")


def http_fetch(url: str, accept: str = STATUSLIST_ACCEPT, limit: int = MAX_STATUS_LIST_BYTES,
               timeout: float = FETCH_TIMEOUT) -> bytes:
    """GET over https (http only on loopback), bounded in time and size."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname or "")):
        raise invalid(f"status list {url} is not an https URL")
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise invalid(f"status list {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise invalid(f"status list {url} unavailable: {getattr(exc, 'reason', exc)}") from None
    if len(body) > limit:
        raise invalid(f"status list {url} is larger than {limit} bytes")
    return body


@dataclass(frozen=True)
class _Cached:
    lst: statuslist.StatusList
    until: float


def status_reference(claims: Mapping[str, Any]) -> tuple[str, int] | None:
    """``status.status_list.{uri, idx}`` of a statement, or None when it carries none."""
    if "status" not in claims:
        return None
    ref = claims["status"].get("status_list") if isinstance(claims["status"], dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("uri"), str) or \
            isinstance(ref.get("idx"), bool) or not isinstance(ref.get("idx"), int) or \
            ref["idx"] < 0:
        raise invalid("claim 'status' is not a status list reference {status_list: {idx, uri}}")
    return ref["uri"], ref["idx"]


class StatusListClient:
    """Fetches, verifies and caches Token Status Lists; thread-safe."""

    def __init__(self, *, clock: Clock | None = None, fetch: Fetch = http_fetch,
                 leeway: int = 60) -> None:
        self.clock: Clock = clock or SystemClock()
        self.fetch = fetch
        self.leeway = leeway
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def status(self, uri: str, idx: int, *, jwks: Mapping[str, Any], issuer: str) -> int:
        """The status value of entry ``idx`` of the list at ``uri``."""
        lst = self.get(uri, jwks=jwks, issuer=issuer)
        if idx >= lst.size:
            raise invalid(f"status index {idx} is outside the list at {uri} ({lst.size} entries)")
        return lst.get(idx)

    def get(self, uri: str, *, jwks: Mapping[str, Any], issuer: str) -> statuslist.StatusList:
        now = self.clock.now()
        with self._lock:
            cached = self._cache.get(uri)
            if cached is not None and now < cached.until:
                return cached.lst
        body = self.fetch(uri)
        self.fetches += 1
        lst, ttl = self._verify(body, uri, jwks=jwks, issuer=issuer, now=now)
        with self._lock:
            self._cache[uri] = _Cached(lst, now + ttl)
        return lst

    def _verify(self, body: bytes, uri: str, *, jwks: Mapping[str, Any], issuer: str,
                now: float) -> tuple[statuslist.StatusList, int]:
        from .verify import read_header, verify_signature  # the one JOSE path for both

        try:
            token = body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise invalid(f"status list {uri} is not a compact JWT") from None
        header = read_header(token)
        if header.get("typ") != STATUSLIST_TYP:
            raise invalid(f"status list {uri} is not typ {STATUSLIST_TYP}")
        payload = verify_signature(token, jwks)
        try:
            claims = json.loads(payload)
        except ValueError:
            raise invalid(f"status list {uri} payload is not JSON") from None
        if not isinstance(claims, dict) or claims.get("sub") != uri:
            raise invalid(f"status list {uri} names another list in 'sub'")
        if "iss" in claims and claims["iss"] != issuer:
            raise invalid(f"status list {uri} was issued by {claims.get('iss')!r}")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(iat, int) or iat > now + self.leeway:
            raise invalid(f"status list {uri} has no valid 'iat'")
        if exp is not None and (not isinstance(exp, int) or now >= exp + self.leeway):
            raise invalid(f"status list {uri} expired")
        ttl = claims.get("ttl", DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise invalid(f"status list {uri} has an invalid 'ttl'")
        try:
            lst = statuslist.StatusList.from_json(claims.get("status_list"))
        except statuslist.StatusListError as exc:
            raise invalid(f"status list {uri}: {exc}") from None
        if exp is not None:
            ttl = min(ttl, max(0, int(exp - now)))
        return lst, ttl
