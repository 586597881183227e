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

Every fetch is https (http only on loopback), bounded in size and by one deadline for the
whole exchange, and never follows a redirect. :func:`http_get` is the one way this package
fetches anything; a resolver of other documents reuses it.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from issuer.core.clock import Clock, SystemClock
from issuer.core.errors import InvalidSoftwareStatement
from issuer.core.metadata import is_loopback_host
from issuer.status import statuslist
from issuer.verifier.jose import (  # the one JOSE path for all kinds
    read_header,
    strict_json,
    verify_signature,
)

STATUSLIST_TYP = "statuslist+jwt"
HISTORICAL_KEYS_TYP = "jwk-set+jwt"
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


@functools.lru_cache(maxsize=1024)  # called per statement with the same few URLs
def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base`` (RFC 6454 section 4)."""
    return _same_origin(url, base)


def _same_origin(url: str, base: str) -> bool:
    # The rule itself, undecorated: mutation testing mutates only undecorated functions.
    a, b = urlsplit(url), urlsplit(base)
    try:
        return (a.scheme.lower(), a.hostname, a.port or _PORTS.get(a.scheme.lower())) == \
            (b.scheme.lower(), b.hostname, b.port or _PORTS.get(b.scheme.lower()))
    except ValueError:  # a port that is not a number
        return False


_PORTS = {"https": 443, "http": 80}


def rebase(url: str, issuer: str, base_url: str | None) -> str:
    """``url`` on ``issuer``'s origin, fetched from ``base_url`` instead (a staging copy of the
    issuer serving the same paths): ``https://iss.example/v1/x`` -> ``<base_url>/v1/x``."""
    if base_url is None or not url.startswith(issuer.rstrip("/") + "/"):
        return url
    return base_url.rstrip("/") + url[len(issuer.rstrip("/")):]


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    # The port is always passed: http.client would read "::1" as host "::", port 1.
    if parts.scheme == "https" and host:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port or 443, timeout=timeout, context=ssl.create_default_context())
    elif parts.scheme == "http" and is_loopback_host(host):
        connection = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    else:
        raise FetchError(f"{url} is not an https URL")
    return connection, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def http_get(url: str, headers: Mapping[str, str] | None = None, *, limit: int,
             timeout: float = FETCH_TIMEOUT) -> HttpResponse:
    """GET over https (http only on loopback), bounded in size and by one deadline for the
    whole exchange (connect, headers, body: a server that drips a byte at a time is cut off);
    redirects are never followed (a 3xx could switch host or scheme: RFC 9110 section 15.4
    lets a client refuse). 304 is a response, any other non-2xx a FetchError."""
    deadline = time.monotonic() + timeout
    try:
        connection, target = _connection(url, timeout)
    except ValueError as exc:  # a port that is not a number
        raise FetchError(f"{url} is not a valid URL: {exc}") from None
    watchdog: threading.Timer | None = None
    try:
        connection.connect()
        sock = connection.sock
        # Per-read timeouts don't bound the total; the watchdog shuts the socket at the deadline.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        connection.request("GET", target, headers={"Accept-Encoding": "identity",
                                                   **dict(headers or {})})
        response = connection.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        if 300 <= response.status < 400 and response.status != 304:
            raise FetchError(f"{url} redirected (HTTP {response.status}); redirects are not "
                             "followed")
        if response.status == 304:
            return HttpResponse(304, got, b"")
        if not 200 <= response.status < 300:
            raise FetchError(f"{url} answered HTTP {response.status}")
        body = _read(response, limit, deadline, url)
        return HttpResponse(response.status, got, body)
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:
            raise FetchError(f"{url} unavailable: no complete answer within {timeout:g}s") \
                from None
        raise FetchError(f"{url} unavailable: {exc}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        connection.close()


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, unlike close()
        except OSError:
            pass


def _read(response: http.client.HTTPResponse, limit: int, deadline: float, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() >= deadline:
            raise FetchError(f"{url} unavailable: no complete answer in time")
        chunk = response.read1(65536)
        if not chunk:
            if time.monotonic() >= deadline:  # the watchdog shut the socket: not an answer
                raise FetchError(f"{url} unavailable: no complete answer in time")
            if response.length:  # fewer bytes than Content-Length said
                raise FetchError(f"{url} unavailable: the answer was cut short")
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise FetchError(f"{url} is larger than {limit} bytes")
        chunks.append(chunk)


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
    lst: statuslist.StatusList | None
    until: float
    #: Why the last fetch failed: remembered briefly so that a burst of statements naming a
    #: list that can't be had costs one fetch, not one each.
    failure: InvalidSoftwareStatement | None = None


#: How long a failed fetch is remembered before it is tried again (seconds).
FAILURE_TTL = 10.0


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


def _integer(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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

    def status(self, uri: str, idx: int, *, jwks: Mapping[str, Any], issuer: str,
               fetch_url: str | None = None) -> int:
        """The status value of entry ``idx`` of the list at ``uri`` (fetched from
        ``fetch_url`` when the issuer is served from elsewhere, e.g. a staging copy)."""
        lst = self.get(uri, jwks=jwks, issuer=issuer, fetch_url=fetch_url)
        if idx >= lst.size:
            raise invalid(f"status index {idx} is outside the list at {uri} ({lst.size} entries)")
        return lst.get(idx)

    def get(self, uri: str, *, jwks: Mapping[str, Any], issuer: str,
            fetch_url: str | None = None) -> statuslist.StatusList:
        now = self.clock.now()
        with self._lock:
            cached = self._cache.get(uri)
        if cached is not None and now < cached.until:
            if cached.failure is not None:
                raise cached.failure
            assert cached.lst is not None
            return cached.lst
        self.fetches += 1
        try:
            body = self.fetch(fetch_url or uri)
            lst, ttl = self._verify(body, uri, jwks=jwks, issuer=issuer, now=now)
        except InvalidSoftwareStatement as exc:
            with self._lock:
                self._cache[uri] = _Cached(None, now + FAILURE_TTL, exc)
            raise
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
        if header.get("typ") != STATUSLIST_TYP:  # RFC 8725 section 3.11
            raise invalid(f"status list {uri} is not typ {STATUSLIST_TYP}")
        claims = strict_json(verify_signature(token, jwks), f"status list {uri} payload")
        if not isinstance(claims, dict) or claims.get("sub") != uri:
            raise invalid(f"status list {uri} names another list in 'sub'")
        if claims.get("iss", issuer) != issuer:
            raise invalid(f"status list {uri} was issued by {claims.get('iss')!r}")
        exp, iat = _integer(claims, "exp"), _integer(claims, "iat")
        if iat is None or iat > now + self.leeway:
            raise invalid(f"status list {uri} has no valid 'iat'")
        if "exp" in claims and (exp is None or now >= exp + self.leeway):
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
    """An issuer's JWK Set behind HTTP caching, bounded refreshes and a bounded stale window.

    The lock guards only the cached state, never a fetch: while one caller refreshes, callers
    whose key is known are answered from the cache, and callers that need the refresh wait for
    that one fetch instead of starting their own.
    """

    def __init__(self, uri: str, *, clock: Clock | None = None, get: HttpGet | None = None,
                 min_refresh_interval: float = 60.0, max_stale: float = 86400.0,
                 default_max_age: int = 300, max_age_cap: int = 86400,
                 timeout: float = FETCH_TIMEOUT, failure_ttl: float = FAILURE_TTL) -> None:
        self.uri = uri
        #: With no set at all, how long a failed fetch answers for itself (0: ask every time).
        self.failure_ttl = failure_ttl
        self.clock: Clock = clock or SystemClock()
        self._get: HttpGet = get or (lambda url, headers: http_get(
            url, headers, limit=MAX_JWKS_BYTES, timeout=timeout))
        self.timeout = timeout
        self.min_refresh_interval = min_refresh_interval
        self.max_stale = max_stale
        self.default_max_age = default_max_age
        self.max_age_cap = max_age_cap
        self._lock = threading.Lock()
        self._jwks: dict[str, Any] | None = None
        self._etag: str | None = None
        self._expires = 0.0
        self._good_at = 0.0
        self._last_attempt = float("-inf")
        self._failure: str | None = None  # why the last fetch failed, while it is recent
        self._inflight: threading.Event | None = None
        self.fetches = 0

    def get(self, kid: str | None = None) -> dict[str, Any]:
        """The key set to verify a token whose header names ``kid``."""
        with self._lock:
            cached = self._answer(self.clock.now(), kid)
            if cached is not None:
                return cached
            leader = self._inflight is None
            if leader:
                self._inflight = threading.Event()
            inflight = self._inflight
            assert inflight is not None
        if leader:
            try:
                self._refresh()
            finally:
                with self._lock:
                    self._inflight = None
                inflight.set()
        else:
            inflight.wait(self.timeout + 1.0)
        with self._lock:
            return self._settled(self.clock.now())

    def _answer(self, now: float, kid: str | None) -> dict[str, Any] | None:
        """The cached set when no fetch is due, else None (under the lock)."""
        recent = now - self._last_attempt < self.min_refresh_interval
        if self._jwks is None:
            failed_lately = now - self._last_attempt < min(self.failure_ttl,
                                                           self.min_refresh_interval)
            if failed_lately and self._failure is not None:  # don't hammer a failing issuer
                raise invalid(f"the issuer's JWKS is unavailable: {self._failure}")
            return None
        fresh = now < self._expires
        known = kid is None or any(k.get("kid") == kid for k in self._jwks["keys"]
                                   if isinstance(k, dict))
        if fresh and (known or recent):
            return self._jwks  # an unknown kid refreshed a moment ago stays unknown
        if recent and self._failure is not None and now - self._good_at <= self.max_stale:
            return self._jwks  # the issuer is down: back off, serve the last good set
        return None

    def _settled(self, now: float) -> dict[str, Any]:
        """After a refresh: the set, the last good one within ``max_stale``, or the failure."""
        if self._jwks is not None and (self._failure is None
                                       or now - self._good_at <= self.max_stale):
            return self._jwks
        raise invalid(f"the issuer's JWKS is unavailable: {self._failure or 'no answer'}")

    def _refresh(self) -> None:
        with self._lock:
            now = self.clock.now()
            self._last_attempt = now
            headers = {"Accept": JWKS_ACCEPT}
            if self._etag and self._jwks is not None:
                headers["If-None-Match"] = self._etag
            self.fetches += 1
        try:
            response = self._get(self.uri, headers)  # no lock held across the network
            jwks = None
            if response.status != 304 or self._jwks is None:
                jwks = strict_json(response.body, f"{self.uri}")
                if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
                    raise FetchError(f"{self.uri} is not a JWK Set")
        except (FetchError, InvalidSoftwareStatement, UnicodeDecodeError) as exc:
            with self._lock:
                self._failure = str(exc.description if isinstance(exc, InvalidSoftwareStatement)
                                    else exc)
            return
        with self._lock:
            if jwks is not None:
                self._jwks = jwks
                self._etag = response.headers.get("etag")
            self._failure = None
            self._good_at = now
            self._expires = now + cache_lifetime(response.headers, self.default_max_age,
                                                 self.max_age_cap)


class HistoricalKeysClient:
    """The issuer's signed historical keys, fetched only to explain an unknown ``kid``; a
    document that can't be had is not asked for again for ``FAILURE_TTL`` seconds."""

    def __init__(self, uri: str, *, clock: Clock | None = None, get: HttpGet | None = None,
                 lifetime: int = 300, timeout: float = FETCH_TIMEOUT) -> None:
        self.uri = uri
        self.clock: Clock = clock or SystemClock()
        self._get: HttpGet = get or (lambda url, headers: http_get(
            url, headers, limit=MAX_JWKS_BYTES, timeout=timeout))
        self.lifetime = lifetime
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def lookup(self, kid: str, *, jwks: Mapping[str, Any], issuer: str) -> dict[str, Any] | None:
        """The historical entry of ``kid`` (with ``revoked`` when revoked), or None when the
        document can't be had or doesn't list it. Never raises: it only explains."""
        now = self.clock.now()
        with self._lock:
            cached = self._cached
        if cached is None or now >= cached[0]:
            keys = self._fetch(jwks, issuer)
            cached = (now + (self.lifetime if keys is not None else FAILURE_TTL), keys or {})
            with self._lock:
                self._cached = cached
        return cached[1].get(kid)

    def _fetch(self, jwks: Mapping[str, Any], issuer: str) -> dict[str, dict[str, Any]] | None:
        self.fetches += 1
        try:
            token = self._get(self.uri, {"Accept": HISTORICAL_ACCEPT}).body.decode().strip()
            if read_header(token).get("typ") != HISTORICAL_KEYS_TYP:  # RFC 8725 section 3.11
                return None
            doc = strict_json(verify_signature(token, jwks), "historical keys")
        except (FetchError, InvalidSoftwareStatement, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("iss") != issuer or \
                not isinstance(doc.get("keys"), list):
            return None
        return {k["kid"]: k for k in doc["keys"] if isinstance(k, dict) and isinstance(
            k.get("kid"), str)}
