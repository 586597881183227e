"""What a verifier fetches from an issuer, and how it caches it.

- :class:`RemoteJwks`: the issuer's JWK Set, cached as its ``Cache-Control`` says and
  revalidated with its ``ETag``; an unknown ``kid`` refreshes it at most once per
  ``min_refresh_interval`` (a burst of forged kids can't make it fetch in a loop); when the
  issuer is unreachable the last good set keeps serving for at most ``max_stale`` seconds.
- :class:`HistoricalKeysClient`: the issuer's signed historical keys (OpenID Federation 1.0),
  to tell "this key was revoked, compromised" from "nobody knows this key".
- :class:`StatusListClient`: Token Status Lists (draft-ietf-oauth-status-list section 8),
  verified with the issuer's JWKS and kept for their ``ttl``, so one cached document answers
  for every statement on the list.

Every fetch is https (http only on loopback), bounded in time and size.
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

from issuer.core.clock import Clock, SystemClock
from issuer.core.errors import InvalidSoftwareStatement
from issuer.core.metadata import is_loopback_host
from issuer.status import statuslist
from issuer.verifier.jose import read_header, verify_signature  # the one JOSE path for all kinds

STATUSLIST_TYP = "statuslist+jwt"
STATUSLIST_ACCEPT = "application/statuslist+jwt"
MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024
FETCH_TIMEOUT = 10.0
#: Used when a list carries no ``ttl``: short, so a revocation is not missed for long.
DEFAULT_TTL = 300

Fetch = Callable[[str], bytes]


def invalid(reason: str) -> InvalidSoftwareStatement:
    return InvalidSoftwareStatement(f"software statement rejected: {reason}")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class FetchError(Exception):
    """A document could not be fetched (network, HTTP status, size)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an instruction: it fails the fetch (a redirect could lead a
    verifier anywhere, past every check made on the URL it was given)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def http_get(url: str, headers: Mapping[str, str] | None = None, *, limit: int,
             timeout: float = FETCH_TIMEOUT) -> HttpResponse:
    """GET over https (http only on loopback), bounded in time and size; 304 is a response,
    any other non-2xx a FetchError."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname or "")):
        raise FetchError(f"{url} is not an https URL")
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body: bytes = response.read(limit + 1)
            status, got = response.status, response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return HttpResponse(304, {k.lower(): v for k, v in exc.headers.items()}, b"")
        if 300 <= exc.code < 400:
            raise FetchError(f"{url} answered a redirect (HTTP {exc.code}), which is not "
                             "followed") from None
        raise FetchError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{url} unavailable: {getattr(exc, 'reason', exc)}") from None
    if len(body) > limit:
        raise FetchError(f"{url} is larger than {limit} bytes")
    return HttpResponse(status, {k.lower(): v for k, v in got.items()}, body)


def http_fetch(url: str, accept: str = STATUSLIST_ACCEPT, limit: int = MAX_STATUS_LIST_BYTES,
               timeout: float = FETCH_TIMEOUT) -> bytes:
    """The body of a status list (or any document), or InvalidSoftwareStatement: a verifier
    that can't learn a statement's status fails closed."""
    try:
        return http_get(url, {"Accept": accept}, limit=limit, timeout=timeout).body
    except FetchError as exc:
        raise invalid(f"status list {exc}") from None


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


HttpGet = Callable[[str, Mapping[str, str]], HttpResponse]
MAX_JWKS_BYTES = 1024 * 1024
JWKS_ACCEPT = "application/jwk-set+json, application/json"
HISTORICAL_ACCEPT = "application/jwk-set+jwt"


def cache_lifetime(headers: Mapping[str, str], default: int, cap: int) -> int:
    """Seconds a response may be reused (RFC 9111 section 5.2.2): ``max-age``, zero for
    ``no-store``/``no-cache``, ``default`` when unsaid; never more than ``cap``."""
    directives = [d.strip().lower() for d in headers.get("cache-control", "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name == "max-age" and value.strip().isdigit():
            return min(int(value), cap)
    return min(default, cap)


class RemoteJwks:
    """An issuer's JWK Set behind HTTP caching, bounded refreshes and a bounded stale window."""

    def __init__(self, uri: str, *, clock: Clock | None = None, get: HttpGet | None = None,
                 min_refresh_interval: float = 60.0, max_stale: float = 86400.0,
                 default_max_age: int = 300, max_age_cap: int = 86400,
                 timeout: float = FETCH_TIMEOUT) -> None:
        self.uri = uri
        self.clock: Clock = clock or SystemClock()
        self._get: HttpGet = get or (lambda url, headers: http_get(
            url, headers, limit=MAX_JWKS_BYTES, timeout=timeout))
        self.min_refresh_interval = min_refresh_interval
        self.max_stale = max_stale
        self.default_max_age = default_max_age
        self.max_age_cap = max_age_cap
        self._lock = threading.Lock()  # one fetch at a time: concurrent misses share it
        self._jwks: dict[str, Any] | None = None
        self._etag: str | None = None
        self._expires = 0.0
        self._good_at = 0.0
        self._last_attempt = float("-inf")
        self._failing = False
        self.fetches = 0

    def get(self, kid: str | None = None) -> dict[str, Any]:
        """The key set to verify a token whose header names ``kid``."""
        with self._lock:
            now = self.clock.now()
            if self._jwks is not None:
                fresh = now < self._expires
                known = kid is None or any(k.get("kid") == kid for k in self._jwks["keys"]
                                           if isinstance(k, dict))
                if fresh and known:
                    return self._jwks
                recent = now - self._last_attempt < self.min_refresh_interval
                if fresh and recent:
                    return self._jwks  # refreshed a moment ago: an unknown kid stays unknown
                if not fresh and recent and self._failing and \
                        now - self._good_at <= self.max_stale:
                    return self._jwks  # the issuer is down: back off, serve the last good set
            self._refresh(now)
            assert self._jwks is not None
            return self._jwks

    def _refresh(self, now: float) -> None:
        self._last_attempt = now
        headers = {"Accept": JWKS_ACCEPT}
        if self._etag and self._jwks is not None:
            headers["If-None-Match"] = self._etag
        self.fetches += 1
        try:
            response = self._get(self.uri, headers)
            if response.status != 304 or self._jwks is None:
                jwks = json.loads(response.body)
                if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
                    raise FetchError(f"{self.uri} is not a JWK Set")
                self._jwks = jwks
                self._etag = response.headers.get("etag")
        except (FetchError, ValueError, UnicodeDecodeError) as exc:
            self._failing = True
            if self._jwks is not None and now - self._good_at <= self.max_stale:
                return  # the issuer is briefly unreachable: keep the last good set
            raise invalid(f"the issuer's JWKS is unavailable: {exc}") from None
        self._failing = False
        self._good_at = now
        self._expires = now + cache_lifetime(response.headers, self.default_max_age,
                                             self.max_age_cap)


class HistoricalKeysClient:
    """The issuer's signed historical keys, fetched only to explain an unknown ``kid``."""

    def __init__(self, uri: str, *, clock: Clock | None = None, get: HttpGet | None = None,
                 lifetime: int = 300, timeout: float = FETCH_TIMEOUT) -> None:
        self.uri = uri
        self.clock: Clock = clock or SystemClock()
        self._get: HttpGet = get or (lambda url, headers: http_get(
            url, headers, limit=MAX_JWKS_BYTES, timeout=timeout))
        self.lifetime = lifetime
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    def lookup(self, kid: str, *, jwks: Mapping[str, Any], issuer: str) -> dict[str, Any] | None:
        """The historical entry of ``kid`` (with ``revoked`` when revoked), or None when the
        document can't be had or doesn't list it. Never raises: it only explains."""
        with self._lock:
            now = self.clock.now()
            if self._cached is None or now >= self._cached[0]:
                try:
                    token = self._get(self.uri, {"Accept": HISTORICAL_ACCEPT}).body.decode().strip()
                    if read_header(token).get("typ") != "jwk-set+jwt":
                        return None
                    doc = json.loads(verify_signature(token, jwks))
                    if doc.get("iss") != issuer or not isinstance(doc.get("keys"), list):
                        return None
                except (FetchError, InvalidSoftwareStatement, ValueError, UnicodeDecodeError,
                        AttributeError):
                    return None
                self._cached = (now + self.lifetime, {k["kid"]: k for k in doc["keys"]
                                                      if isinstance(k, dict) and "kid" in k})
            return self._cached[1].get(kid)
