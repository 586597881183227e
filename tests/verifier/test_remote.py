"""Remote fetching facing a hostile internet: no redirects, one deadline per fetch, no lock held
across the network, failures remembered briefly, status lists only from the issuer's origin
and only for statements that passed every cheap check."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url_decode
from issuer.core.errors import InvalidSoftwareStatement
from issuer.core.statements import encode_payload
from issuer.verifier import MemoryReplayCache, Registrar, RegistrationPolicy
from issuer.verifier.remote import (
    DEFAULT_TTL,
    FAILURE_TTL,
    FETCH_TIMEOUT,
    FetchError,
    HistoricalKeysClient,
    HttpResponse,
    RemoteJwks,
    StatusListClient,
    _connection,
    cache_lifetime,
    http_fetch,
    http_get,
    rebase,
    same_origin,
    status_reference,
)
from tests.conftest import START
from tests.verifier.test_verifier import (  # noqa: F401 - issuer_site is a fixture
    ISS,
    JWKS_URI,
    FakeIssuer,
    forged_kid,
    issuer_site,
    mint,
    verifier_for,
)


def answer(handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class Hostile(http.server.BaseHTTPRequestHandler):
    """Redirects anywhere, or drips its answer a byte at a time."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/redirect"):
            target = self.path.split("to=", 1)[1]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):  # 0.2 s a byte: 200 s in all, each read well within 1 s
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                self.server.stop.wait(0.2)  # type: ignore[attr-defined]
        elif self.path == "/drip-headers":  # a header line a byte at a time, for 5 s at most
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(25):  # 0.2 s a byte: each read within any per-read timeout
                try:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                except OSError:
                    return
                if self.server.stop.wait(0.2):  # type: ignore[attr-defined]
                    return
            self.wfile.write(b"\r\nContent-Length: 2\r\n\r\n{}")
        elif self.path == "/big":  # 200,000 bytes: several reads
            answer(self, bytes(range(256)) * 781 + b"end!")
        elif self.path == "/short":  # says 1000 bytes, sends 10 and closes
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
        elif self.path.startswith("/status/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/echo"):  # the request line's target and the headers
            answer(self, json.dumps({"target": self.path, **{
                k.lower(): v for k, v in self.headers.items()}}).encode())
        else:
            answer(self, b'{"keys": []}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    server.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stop.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def serving(body: bytes) -> Iterator[tuple[str, list[str]]]:
    """A loopback site answering every GET with ``body``; yields its base URL and the Accept
    header of each request it got."""
    accepted: list[str] = []

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            accepted.append(self.headers.get("Accept", ""))
            answer(self, body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", accepted
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("target", ["/ok", "https://evil.example/jwks.json",
                                    "http://evil.example/jwks.json", "ftp://evil.example/x"])
def test_redirects_are_not_followed(hostile: str, target: str) -> None:
    location = hostile + target if target.startswith("/") else target
    with pytest.raises(FetchError, match="redirected .*HTTP 302.*not followed"):
        http_get(f"{hostile}/redirect?to={location}", {}, limit=1024)
    with pytest.raises(InvalidSoftwareStatement, match="not followed"):
        RemoteJwks(f"{hostile}/redirect?to={location}").get()
    assert http_get(f"{hostile}/ok", {}, limit=1024).body == b'{"keys": []}'


def test_an_ipv6_loopback_url_is_fetched_from_its_port() -> None:
    class V6(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = V6(("::1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://[::1]:{server.server_address[1]}/ok"
        assert http_get(url, {}, limit=1024).body == b'{"keys": []}'
    finally:
        server.shutdown()
        server.server_close()


def test_one_deadline_for_the_whole_fetch(hostile: str) -> None:
    """Every byte arrives within the per-read timeout; the whole answer would take 200 s."""
    with pytest.raises(FetchError, match="no complete answer"):
        http_get(f"{hostile}/drip", {}, limit=4096, timeout=1.0)


def test_the_jwks_lock_is_not_held_across_a_fetch(auth: Authority,
                                                  issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    remote = RemoteJwks(JWKS_URI, clock=clock, get=issuer_site.get, min_refresh_interval=0)
    kid = auth.keystore.active().kid
    assert remote.get(kid)
    entered, release = threading.Event(), threading.Event()

    def slow(url: str, headers: Any) -> HttpResponse:
        entered.set()
        release.wait(30)
        return issuer_site.get(url, headers)

    remote._get = slow
    refresher = threading.Thread(target=remote.get, args=("forged",))
    refresher.start()
    assert entered.wait(10)  # a refresh for an unknown kid is on the network now
    answered = threading.Event()
    reader = threading.Thread(target=lambda: (remote.get(kid), answered.set()))
    reader.start()
    assert answered.wait(10)  # a known kid is answered from the cache meanwhile
    assert not release.is_set()
    release.set()
    refresher.join(10)
    reader.join(10)
    assert remote.fetches == 2


def test_a_burst_of_forged_kids_costs_one_fetch_of_each_document(auth: Authority,
                                                                 issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    token = mint(auth)
    verifier.verify(token)
    real = issuer_site.get

    def no_history(url: str, headers: Any) -> HttpResponse:
        if url.endswith("historical-keys"):
            issuer_site.fetches.append(url)
            raise FetchError(f"{url} answered HTTP 503")
        return real(url, headers)

    issuer_site.get = no_history  # type: ignore[method-assign]
    verifier.issuer(ISS).historical._get = no_history  # type: ignore[union-attr]
    for i in range(20):
        with pytest.raises(InvalidSoftwareStatement, match="unknown key"):
            verifier.verify(forged_kid(token, f"forged-{i}"))
    assert sum(u.endswith("historical-keys") for u in issuer_site.fetches) == 1


def test_a_failing_jwks_is_not_fetched_for_every_statement(auth: Authority,
                                                          issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    issuer_site.down = True
    token = mint(auth)
    for _ in range(20):
        with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable"):
            verifier.verify(token)
    assert len(issuer_site.fetches) == 1
    issuer_site.down = False
    clock.advance(11)  # failures are remembered for seconds, not longer
    assert verifier.verify(token)


def test_a_failing_status_list_is_not_fetched_for_every_statement(
        auth: Authority, issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock)
    tokens = [mint(auth) for _ in range(20)]
    verifier.issuer(ISS).jwks.get()  # type: ignore[union-attr]
    status = verifier.status
    assert status is not None
    status.fetch = lambda uri: (_ for _ in ()).throw(  # type: ignore[assignment]
        InvalidSoftwareStatement(f"status list {uri} unavailable"))
    for token in tokens:
        with pytest.raises(InvalidSoftwareStatement, match="unavailable"):
            verifier.verify(token)
    assert status.fetches == 1


def _restatus(auth: Authority, token: str, uri: str) -> str:
    claims = json.loads(b64url_decode(token.split(".")[1]))
    claims["status"]["status_list"]["uri"] = uri
    return auth.keystore.signer().sign(encode_payload(claims))


@pytest.mark.parametrize("uri", ["https://evil.example/v1/status-lists/x",
                                 "http://issuer.example.com/v1/status-lists/x",
                                 "https://issuer.example.com:8443/v1/status-lists/x",
                                 "https://issuer.example.com.evil.example/v1/status-lists/x"])
def test_status_lists_only_from_the_issuers_origin(auth: Authority, issuer_site: FakeIssuer,
                                                   uri: str) -> None:
    verifier = verifier_for(issuer_site, FixedClock(START))
    token = _restatus(auth, mint(auth), uri)
    with pytest.raises(InvalidSoftwareStatement,
                       match=f"status list {re.escape(uri)} is not on the origin of its issuer"):
        verifier.verify(token)
    assert not any("status-lists" in u for u in issuer_site.fetches)
    assert verifier.status is not None and verifier.status.fetches == 0


def test_status_is_checked_only_after_the_cheap_checks(auth: Authority,
                                                       issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, max_age=3600)
    status = verifier.status
    assert status is not None
    reg = Registrar(verifier, RegistrationPolicy(replay_cache=MemoryReplayCache(clock)))
    token = mint(auth)
    reg.register({"software_statement": token})
    assert status.fetches == 1
    clock.advance(400)  # past the list's ttl: a status check would fetch again
    with pytest.raises(InvalidSoftwareStatement, match="already used"):
        reg.register({"software_statement": token})
    clock.advance(3600)
    with pytest.raises(InvalidSoftwareStatement, match="3600s old"):
        verifier.verify(mint_at(auth, START))
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(InvalidSoftwareStatement, match="signature"):
        reg.register({"software_statement": tampered})
    assert status.fetches == 1


def mint_at(auth: Authority, iat: int) -> str:
    claims = json.loads(b64url_decode(mint(auth).split(".")[1]))
    return auth.keystore.signer().sign(encode_payload({**claims, "iat": iat}))


def test_origins_and_rebasing() -> None:
    assert same_origin("https://a.example/x", "https://a.example")
    assert same_origin("https://a.example:443/x", "https://A.example/")
    assert not same_origin("https://a.example:444/x", "https://a.example")
    assert not same_origin("http://a.example/x", "https://a.example")
    assert not same_origin("https://a.example:x/", "https://a.example")
    assert rebase(f"{ISS}/v1/status-lists/1", ISS, "http://127.0.0.1:9") == \
        "http://127.0.0.1:9/v1/status-lists/1"
    assert rebase("https://other.example/x", ISS, "http://127.0.0.1:9") == "https://other.example/x"
    assert rebase(f"{ISS}/x", ISS, None) == f"{ISS}/x"


def test_historical_keys_are_typed(auth: Authority, issuer_site: FakeIssuer) -> None:
    """A document that is not ``jwk-set+jwt`` explains nothing, even signed by the issuer."""
    resigned = auth.keystore.signer().sign(
        json.dumps(auth.keys.historical_keys()).encode())  # typ JWT

    def get(url: str, headers: Any) -> HttpResponse:
        return HttpResponse(200, {}, resigned.encode())

    client = HistoricalKeysClient(f"{ISS}/.well-known/historical-keys", get=get)
    kid = auth.keystore.active().kid
    assert client.lookup(kid, jwks=auth.jwks(), issuer=ISS) is None


# --- the checks on status list tokens and historical keys, each guarded ----------------------


def _list_token(auth: Authority) -> tuple[str, int, dict[str, Any]]:
    ref = json.loads(b64url_decode(mint(auth).split(".")[1]))["status"]["status_list"]
    token = auth.status.document(ref["uri"].rsplit("/", 1)[1], auth.keystore)[0]
    return ref["uri"], ref["idx"], json.loads(b64url_decode(token.split(".")[1]))


def _status(auth: Authority, uri: str, idx: int, body: str, clock: FixedClock) -> int:
    client = StatusListClient(clock=clock, fetch=lambda _: body.encode())
    return client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)


def _list_signer(auth: Authority, claims: dict[str, Any]) -> Callable[..., str]:
    """Signs the status list token ``claims`` with the given changes, as the issuer would."""
    signer = auth.keystore.signer()

    def sign(**changes: Any) -> str:
        return signer.sign(encode_payload({**claims, **changes}), typ="statuslist+jwt")

    return sign


def test_status_list_tokens_are_checked(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    signer = auth.keystore.signer()
    sign = _list_signer(auth, claims)

    clock = FixedClock(START)
    assert _status(auth, uri, idx, sign(), clock) == 0
    real = sign()
    header, _, signature = real.split(".")
    forged_payload = encode_payload({**claims, "ttl": 1})
    from issuer.core.encoding import b64url
    forged = f"{header}.{b64url(forged_payload)}.{signature}"
    cases = [
        (forged, "signature does not verify"),
        (sign(sub=f"{uri}-other"), "names another list"),
        (sign(iss="https://evil.example"), "was issued by"),
        (sign(exp=START - 3600), "expired"),
        (sign(exp="never"), "expired"),
        (sign(iat=START + 3600), "no valid 'iat'"),
        (signer.sign(encode_payload(claims), typ="JWT"), "not typ statuslist+jwt"),
    ]
    for body, text in cases:
        with pytest.raises(InvalidSoftwareStatement, match=re.escape(text)):
            _status(auth, uri, idx, body, clock)


def test_historical_keys_signature_is_checked(auth: Authority) -> None:
    from issuer.core.encoding import b64url
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    document = auth.keys.historical_keys_jwt()
    header, payload, signature = document.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["keys"].append({**claims["keys"][0], "kid": "framed",
                           "revoked": {"revoked_at": START, "reason": "compromised"}})
    forged = f"{header}.{b64url(encode_payload(claims))}.{signature}"

    def client(body: str) -> HistoricalKeysClient:
        return HistoricalKeysClient(f"{ISS}/.well-known/historical-keys",
                                    get=lambda u, h: HttpResponse(200, {}, body.encode()))

    jwks = auth.jwks()
    assert client(document).lookup(old, jwks=jwks, issuer=ISS)["revoked"]["reason"] == "compromised"
    assert client(forged).lookup("framed", jwks=jwks, issuer=ISS) is None
    assert client(forged).lookup(old, jwks=jwks, issuer=ISS) is None
    assert client(document).lookup(old, jwks=jwks, issuer="https://evil.example") is None


def test_a_staging_copy_serves_the_status_lists(auth: Authority, issuer_site: FakeIssuer) -> None:
    """With ``base_url``, the list a statement names on the issuer's origin is fetched from the
    staging copy; every check on the list still uses the issuer's own URI."""
    staging = "http://127.0.0.1:9"
    verifier = verifier_for(issuer_site, FixedClock(START), base_url=staging)
    asked: list[str] = []
    status = verifier.status
    assert status is not None
    status.fetch = lambda url: (asked.append(url), issuer_site.get(  # type: ignore[assignment]
        url.replace(staging, ISS), {}).body)[1]
    token = mint(auth)
    assert verifier.verify(token)
    uri = json.loads(b64url_decode(token.split(".")[1]))["status"]["status_list"]["uri"]
    assert asked == [uri.replace(ISS, staging)]
    assert verifier.issuer(ISS).jwks.uri == f"{staging}/.well-known/jwks.json"  # type: ignore[union-attr]


# --- the bounds of one fetch, each guarded -----------------------------------------------------


def test_an_answer_cut_short_is_not_an_answer(hostile: str) -> None:
    with pytest.raises(FetchError, match="cut short"):
        http_get(f"{hostile}/short", {}, limit=4096)


def test_the_size_limit_is_inclusive(hostile: str) -> None:
    body = b'{"keys": []}'
    assert http_get(f"{hostile}/ok", {}, limit=len(body)).body == body
    with pytest.raises(FetchError, match=f"larger than {len(body) - 1} bytes"):
        http_get(f"{hostile}/ok", {}, limit=len(body) - 1)


@pytest.mark.parametrize("status", [404, 500, 204])
def test_http_statuses(hostile: str, status: int) -> None:
    if status == 204:
        response = http_get(f"{hostile}/status/204", {}, limit=16)
        assert (response.status, response.body) == (204, b"")
        return
    with pytest.raises(FetchError, match=f"answered HTTP {status}"):
        http_get(f"{hostile}/status/{status}", {}, limit=16)


def test_a_not_modified_answer_is_a_response(hostile: str) -> None:
    response = http_get(f"{hostile}/status/304", {}, limit=16)
    assert response.status == 304 and response.body == b""
    assert response.headers["content-length"] == "0"  # header names are lower-cased


def test_the_request_carries_the_query_and_the_callers_headers(hostile: str) -> None:
    sent = json.loads(http_get(f"{hostile}/echo?a=1&b=2", {"Accept": "application/x"},
                               limit=4096).body)
    assert sent["target"] == "/echo?a=1&b=2"
    assert sent["accept"] == "application/x"
    assert sent["accept-encoding"] == "identity"  # a compressed body would dodge the size cap
    host, port = hostile.removeprefix("http://").split(":")
    assert sent["host"] in (f"{host}:{port}", host)


@pytest.mark.parametrize("url", ["http://issuer.example.com/jwks.json", "ftp://127.0.0.1/x",
                                 "https:///jwks.json", "file:///etc/passwd"])
def test_only_https_or_loopback_http_is_fetched(url: str) -> None:
    with pytest.raises(FetchError, match="is not an https URL"):
        http_get(url, {}, limit=16)


def test_a_url_with_a_bad_port_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="is not a valid URL"):
        http_get("https://issuer.example.com:x/jwks.json", {}, limit=16)


def test_http_fetch_fails_closed(hostile: str) -> None:
    assert http_fetch(f"{hostile}/ok") == b'{"keys": []}'
    assert json.loads(http_fetch(f"{hostile}/echo"))["accept"] == "application/statuslist+jwt"
    with pytest.raises(InvalidSoftwareStatement, match="status list .* answered HTTP 404"):
        http_fetch(f"{hostile}/status/404")
    with pytest.raises(InvalidSoftwareStatement, match="larger than 4 bytes"):
        http_fetch(f"{hostile}/ok", limit=4)


def test_cache_lifetimes() -> None:
    assert cache_lifetime({"cache-control": "public, max-age=60"}, 300, 86400) == 60
    assert cache_lifetime({"cache-control": "Public, Max-Age=60"}, 300, 86400) == 60
    assert cache_lifetime({"cache-control": "no-cache, max-age=60"}, 300, 86400) == 0
    assert cache_lifetime({"cache-control": "max-age=60, no-store"}, 300, 86400) == 0
    assert cache_lifetime({"cache-control": "max-age=-5"}, 300, 86400) == 300
    assert cache_lifetime({"cache-control": "max-age=soon"}, 300, 86400) == 300
    assert cache_lifetime({"cache-control": "s-maxage=60"}, 300, 86400) == 300
    assert cache_lifetime({}, 300, 100) == 100


@pytest.mark.parametrize("status", [
    {"status_list": {"idx": -1, "uri": f"{ISS}/l"}},
    {"status_list": {"idx": True, "uri": f"{ISS}/l"}},
    {"status_list": {"idx": "1", "uri": f"{ISS}/l"}},
    {"status_list": {"idx": 1, "uri": 7}},
    {"status_list": {"idx": 1}},
    {"status_list": [1, f"{ISS}/l"]},
    {"other": {}},
    "revoked",
])
def test_a_malformed_status_reference_is_refused(status: Any) -> None:
    with pytest.raises(InvalidSoftwareStatement, match="not a status list reference"):
        status_reference({"status": status})


def test_status_references() -> None:
    assert status_reference({"iss": ISS}) is None
    assert status_reference({"status": {"status_list": {"idx": 0, "uri": f"{ISS}/l"}}}) == \
        (f"{ISS}/l", 0)


# --- status list caching and bounds ------------------------------------------------------------


def test_a_status_list_is_kept_for_its_ttl_capped_by_its_exp(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    signer = auth.keystore.signer()
    clock = FixedClock(START)
    bodies: list[str] = []

    def client_for(**changes: Any) -> StatusListClient:
        body = signer.sign(encode_payload({**claims, **changes}), typ="statuslist+jwt")
        return StatusListClient(clock=clock, fetch=lambda _: (bodies.append(body), body)[1]
                                .encode())

    claims.pop("exp", None)
    client = client_for(iat=START, ttl=100)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    clock.advance(99)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    clock.advance(1)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 2
    # exp 50 s ahead caps a ttl of 1000
    now = int(clock.now())
    client = client_for(iat=now, exp=now + 50, ttl=1000)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    clock.advance(49)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    clock.advance(1)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)  # within leeway, fetched again
    assert client.fetches == 2
    # no ttl: the default, 300 s
    client = client_for(iat=int(clock.now()))
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    clock.advance(299)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    clock.advance(1)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 2


@pytest.mark.parametrize("ttl", [-1, True, "300", 1.5])
def test_a_status_list_with_an_invalid_ttl_is_refused(auth: Authority, ttl: Any) -> None:
    uri, idx, claims = _list_token(auth)
    body = auth.keystore.signer().sign(encode_payload({**claims, "ttl": ttl}),
                                       typ="statuslist+jwt")
    with pytest.raises(InvalidSoftwareStatement, match="invalid 'ttl'"):
        _status(auth, uri, idx, body, FixedClock(START))


def test_status_list_times_at_their_bounds(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    signer = auth.keystore.signer()
    sign = _list_signer(auth, claims)

    clock = FixedClock(START)
    assert _status(auth, uri, idx, sign(iat=START + 60), clock) == 0  # leeway 60 s
    with pytest.raises(InvalidSoftwareStatement, match="no valid 'iat'"):
        _status(auth, uri, idx, sign(iat=START + 61), clock)
    for iat in ("now", True, None):
        with pytest.raises(InvalidSoftwareStatement, match="no valid 'iat'"):
            _status(auth, uri, idx, sign(iat=iat), clock)
    assert _status(auth, uri, idx, sign(iat=START - 100, exp=START - 59), clock) == 0
    with pytest.raises(InvalidSoftwareStatement, match="expired"):
        _status(auth, uri, idx, sign(iat=START - 100, exp=START - 60), clock)
    with pytest.raises(InvalidSoftwareStatement, match="expired"):
        _status(auth, uri, idx, sign(iat=START - 100, exp=True), clock)
    # a list that does not name its issuer is taken; one that names another is not
    no_iss = {k: v for k, v in claims.items() if k != "iss"}
    body = signer.sign(encode_payload(no_iss), typ="statuslist+jwt")
    assert _status(auth, uri, idx, body, clock) == 0
    with pytest.raises(InvalidSoftwareStatement, match="is not a compact JWT"):
        _status(auth, uri, idx, "\u00e9", clock)
    with pytest.raises(InvalidSoftwareStatement, match="names another list"):
        _status(auth, uri, idx, signer.sign(encode_payload([claims]), typ="statuslist+jwt"),
                clock)
    with pytest.raises(InvalidSoftwareStatement, match=f"status list {re.escape(uri)}: "):
        _status(auth, uri, idx, sign(status_list={"bits": 3, "lst": ""}), clock)


def test_a_status_index_past_the_end_is_refused(auth: Authority) -> None:
    uri, _, claims = _list_token(auth)
    body = auth.keystore.signer().sign(encode_payload(claims), typ="statuslist+jwt")
    client = StatusListClient(clock=FixedClock(START), fetch=lambda _: body.encode())
    size = client.get(uri, jwks=auth.jwks(), issuer=ISS).size
    assert client.status(uri, size - 1, jwks=auth.jwks(), issuer=ISS) in (0, 1, 2, 3)
    with pytest.raises(InvalidSoftwareStatement, match=f"status index {size} is outside"):
        client.status(uri, size, jwks=auth.jwks(), issuer=ISS)


def test_a_failed_status_list_is_retried_after_the_failure_ttl(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    good = auth.keystore.signer().sign(encode_payload(claims), typ="statuslist+jwt")
    answers = ["garbage", good]
    clock = FixedClock(START)
    client = StatusListClient(clock=clock, fetch=lambda _: answers[0].encode())
    for _ in range(3):
        with pytest.raises(InvalidSoftwareStatement):
            client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    answers.pop(0)
    clock.advance(FAILURE_TTL - 1)
    with pytest.raises(InvalidSoftwareStatement):
        client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    clock.advance(1)
    assert client.status(uri, idx, jwks=auth.jwks(), issuer=ISS) == 0
    assert client.fetches == 2


# --- the JWKS cache's clocks, each at its bound ------------------------------------------------


class Script:
    """Answers a fetch with the next scripted answer (a response or a FetchError to raise)."""

    def __init__(self, *answers: HttpResponse | FetchError) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, str]] = []

    def __call__(self, url: str, headers: Any) -> HttpResponse:
        self.sent.append(dict(headers))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, FetchError):
            raise answer
        return answer


def _set(kid: str, **headers: str) -> HttpResponse:
    return HttpResponse(200, headers, json.dumps({"keys": [{"kid": kid, "kty": "OKP"}]}).encode())


DOWN = FetchError("down")


@pytest.mark.parametrize("body", [b'{"keys": {}}', b"[]", b'{"key": []}', b"\xff", b"{"])
def test_a_body_that_is_not_a_jwk_set_is_a_failure(body: bytes) -> None:
    remote = RemoteJwks(JWKS_URI, clock=FixedClock(START), get=Script(HttpResponse(200, {}, body)))
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable"):
        remote.get()


def test_an_unknown_kid_refreshes_once_per_interval() -> None:
    """At most once a minute by default."""
    clock = FixedClock(START)
    script = Script(_set("a", **{"cache-control": "max-age=3600"}))
    remote = RemoteJwks(JWKS_URI, clock=clock, get=script)
    remote.get("a")
    remote.get("a")
    assert remote.fetches == 1
    remote.get("b")  # 0 s after the last fetch: stays unknown
    clock.advance(59)
    remote.get("b")
    assert remote.fetches == 1
    clock.advance(1)
    remote.get("b")
    assert remote.fetches == 2
    remote.get()  # no kid: any fresh set answers
    assert remote.fetches == 2


def test_the_etag_is_sent_only_with_a_set_in_hand() -> None:
    clock = FixedClock(START)
    first = _set("a", etag='"v1"', **{"cache-control": "max-age=10"})
    script = Script(first, HttpResponse(304, {"cache-control": "max-age=10"}, b""))
    remote = RemoteJwks(JWKS_URI, clock=clock, get=script)
    got = remote.get()
    assert "If-None-Match" not in script.sent[0]
    assert script.sent[0]["Accept"] == "application/jwk-set+json, application/json"
    clock.advance(10)
    assert remote.get() is got  # 304: the same set, fresh again for 10 s
    assert script.sent[1]["If-None-Match"] == '"v1"'
    clock.advance(9)
    remote.get()
    assert remote.fetches == 2
    # a 304 with no set in hand is no JWK Set
    none = RemoteJwks(JWKS_URI, clock=clock, get=Script(HttpResponse(304, {}, b"")))
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable"):
        none.get()


def test_with_no_set_a_failure_answers_for_failure_ttl() -> None:
    clock = FixedClock(START)
    remote = RemoteJwks(JWKS_URI, clock=clock, get=Script(DOWN), failure_ttl=10,
                        min_refresh_interval=60)
    for _ in range(3):
        with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable: down"):
            remote.get()
    clock.advance(9)
    with pytest.raises(InvalidSoftwareStatement, match="down"):
        remote.get()
    assert remote.fetches == 1
    clock.advance(1)
    with pytest.raises(InvalidSoftwareStatement, match="down"):
        remote.get()
    assert remote.fetches == 2
    # the shorter of failure_ttl and min_refresh_interval
    short = RemoteJwks(JWKS_URI, clock=clock, get=Script(DOWN), failure_ttl=100,
                       min_refresh_interval=5)
    for _ in range(2):
        with pytest.raises(InvalidSoftwareStatement):
            short.get()
    clock.advance(5)
    with pytest.raises(InvalidSoftwareStatement):
        short.get()
    assert short.fetches == 2
    every = RemoteJwks(JWKS_URI, clock=clock, get=Script(DOWN), failure_ttl=0)
    for _ in range(3):
        with pytest.raises(InvalidSoftwareStatement):
            every.get()
    assert every.fetches == 3


def test_the_last_good_set_serves_for_max_stale_and_not_a_second_longer() -> None:
    clock = FixedClock(START)
    script = Script(_set("a", **{"cache-control": "max-age=100"}), DOWN)
    remote = RemoteJwks(JWKS_URI, clock=clock, get=script, max_stale=1000,
                        min_refresh_interval=60)
    good = remote.get("a")
    clock.advance(100)  # expired: a refresh, which fails
    assert remote.get("a") is good
    assert remote.fetches == 2
    clock.advance(30)  # recent failure: backs off, serves the last good set
    assert remote.get("a") is good
    assert remote.fetches == 2
    clock.advance(870)  # 1000 s after the last good fetch: still served
    assert remote.get("a") is good
    clock.advance(1)
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable: down"):
        remote.get("a")
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable: down"):
        remote.get("a")  # backing off does not serve it either


def test_historical_keys_are_kept_for_their_lifetime_and_failures_briefly(
        auth: Authority) -> None:
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    document = HttpResponse(200, {}, auth.keys.historical_keys_jwt().encode())
    clock = FixedClock(START)
    script = Script(document)
    client = HistoricalKeysClient(f"{ISS}/.well-known/historical-keys", clock=clock, get=script,
                                  lifetime=100)
    jwks = auth.jwks()
    assert client.lookup(old, jwks=jwks, issuer=ISS) is not None
    assert script.sent[0] == {"Accept": "application/jwk-set+jwt"}
    clock.advance(99)
    assert client.lookup("other", jwks=jwks, issuer=ISS) is None
    assert client.fetches == 1
    clock.advance(1)
    client.lookup(old, jwks=jwks, issuer=ISS)
    assert client.fetches == 2
    failing = HistoricalKeysClient(f"{ISS}/.well-known/historical-keys", clock=clock,
                                   get=Script(DOWN), lifetime=1000)
    assert failing.lookup(old, jwks=jwks, issuer=ISS) is None
    clock.advance(FAILURE_TTL - 1)
    assert failing.lookup(old, jwks=jwks, issuer=ISS) is None
    assert failing.fetches == 1
    clock.advance(1)
    assert failing.lookup(old, jwks=jwks, issuer=ISS) is None
    assert failing.fetches == 2


def test_http_fetch_keeps_the_callers_deadline(hostile: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidSoftwareStatement, match="no complete answer"):
        http_fetch(f"{hostile}/drip", timeout=1.0)
    assert time.monotonic() - started < FETCH_TIMEOUT / 2  # not the 10 s default


def test_historical_keys_skip_malformed_entries(auth: Authority) -> None:
    """A signed document with junk entries still explains the well-formed ones, never raises."""
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    claims = json.loads(b64url_decode(auth.keys.historical_keys_jwt().split(".")[1]))
    claims["keys"] = ["junk", 7, {"kid": 5}, {"no": "kid"}, *claims["keys"]]
    body = auth.keystore.signer().sign(encode_payload(claims), typ="jwk-set+jwt")
    client = HistoricalKeysClient(f"{ISS}/.well-known/historical-keys",
                                  get=lambda u, h: HttpResponse(200, {}, body.encode()))
    assert client.lookup(old, jwks=auth.jwks(), issuer=ISS)["revoked"]["reason"] == "compromised"


# --- the lifetimes a client assumes when the issuer says nothing -------------------------------


def test_a_status_list_without_ttl_or_exp_is_kept_for_the_default_ttl(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    bare = {k: v for k, v in claims.items() if k not in ("ttl", "exp")}
    body = auth.keystore.signer().sign(encode_payload(bare), typ="statuslist+jwt")
    clock = FixedClock(START)
    client = StatusListClient(clock=clock, fetch=lambda _: body.encode())
    assert client.status(uri, idx, jwks=auth.jwks(), issuer=ISS) == 0
    clock.advance(DEFAULT_TTL - 1)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    clock.advance(1)
    client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 2


def test_a_status_list_with_ttl_zero_or_past_its_exp_is_not_kept(auth: Authority) -> None:
    """``ttl`` 0 is valid (ask every time); a list within the leeway past its ``exp`` is
    accepted for this statement and never kept for the next."""
    uri, idx, claims = _list_token(auth)
    sign = _list_signer(auth, claims)
    clock = FixedClock(START)
    for body in (sign(iat=START, ttl=0), sign(iat=START - 100, exp=START - 10, ttl=300),
                 sign(iat=START - 100, exp=START, ttl=300)):
        client = StatusListClient(clock=clock, fetch=lambda _, b=body: b.encode())
        assert client.status(uri, idx, jwks=auth.jwks(), issuer=ISS) == 0
        assert client.status(uri, idx, jwks=auth.jwks(), issuer=ISS) == 0
        assert client.fetches == 2


def test_refusals_of_a_status_list_name_what_was_wrong(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    signer = auth.keystore.signer()
    clock = FixedClock(START)
    with pytest.raises(InvalidSoftwareStatement,
                       match=re.escape(f"status list {uri} payload is not JSON")):
        _status(auth, uri, idx, signer.sign(b"not json", typ="statuslist+jwt"), clock)
    with pytest.raises(InvalidSoftwareStatement,
                       match=re.escape("was issued by 'https://evil.example'")):
        _status(auth, uri, idx, _list_signer(auth, claims)(iss="https://evil.example"), clock)


def test_the_jwks_serves_its_last_good_set_for_a_day_by_default() -> None:
    """86,400 s after it was fetched, not a second longer."""
    clock = FixedClock(START)
    remote = RemoteJwks(JWKS_URI, clock=clock,
                        get=Script(_set("a", **{"cache-control": "max-age=100"}), DOWN))
    good = remote.get("a")
    clock.advance(86400)
    assert remote.get("a") is good
    clock.advance(1)
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable: down"):
        remote.get("a")


def test_historical_keys_are_kept_for_300_s_by_default(auth: Authority) -> None:
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    document = HttpResponse(200, {}, auth.keys.historical_keys_jwt().encode())
    clock = FixedClock(START)
    client = HistoricalKeysClient(f"{ISS}/.well-known/historical-keys", clock=clock,
                                  get=Script(document))
    assert client.lookup(old, jwks=auth.jwks(), issuer=ISS) is not None
    clock.advance(299)
    client.lookup(old, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 1
    clock.advance(1)
    client.lookup(old, jwks=auth.jwks(), issuer=ISS)
    assert client.fetches == 2


def test_historical_keys_are_fetched_over_http_with_their_accept_and_deadline(
        auth: Authority, hostile: str) -> None:
    """The client's own fetch (no ``get`` passed): the document's media type is asked for, and
    a server that drips is cut off at the client's timeout, not the 10 s default."""
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    with serving(auth.keys.historical_keys_jwt().encode()) as (site, accepted):
        client = HistoricalKeysClient(f"{site}/.well-known/historical-keys")
        entry = client.lookup(old, jwks=auth.jwks(), issuer=ISS)
        assert entry is not None and entry["revoked"]["reason"] == "compromised"
        assert accepted == ["application/jwk-set+jwt"]
    started = time.monotonic()
    client = HistoricalKeysClient(f"{hostile}/drip", timeout=1.0)
    assert client.lookup(old, jwks=auth.jwks(), issuer=ISS) is None
    assert time.monotonic() - started < FETCH_TIMEOUT / 2


def test_the_jwks_defaults_keep_a_set_300_s_unsaid_and_a_day_at_most() -> None:
    for cache_control, kept in (("", 300), ("max-age=999999", 86400)):
        clock = FixedClock(START)
        remote = RemoteJwks(JWKS_URI, clock=clock,
                            get=Script(_set("a", **{"cache-control": cache_control})))
        remote.get("a")
        clock.advance(kept - 1)
        remote.get("a")
        assert remote.fetches == 1
        clock.advance(1)
        remote.get("a")
        assert remote.fetches == 2


def test_the_jwks_is_fetched_over_http_with_its_accept_and_deadline(hostile: str) -> None:
    """The set's own fetch (no ``get`` passed) asks for a JWK Set and is cut off at the
    client's timeout, not the 10 s default."""
    with serving(b'{"keys": []}') as (site, accepted):
        assert RemoteJwks(f"{site}/jwks").get() == {"keys": []}
        assert accepted == ["application/jwk-set+json, application/json"]
    started = time.monotonic()
    with pytest.raises(InvalidSoftwareStatement, match="no complete answer"):
        RemoteJwks(f"{hostile}/drip", timeout=1.0).get()
    assert time.monotonic() - started < FETCH_TIMEOUT / 2


def test_a_caller_waiting_on_another_callers_fetch_gives_up_a_second_after_its_timeout(
        ) -> None:
    release, entered = threading.Event(), threading.Event()

    def stuck(url: str, headers: Any) -> HttpResponse:
        entered.set()
        release.wait(30)
        raise DOWN

    remote = RemoteJwks(JWKS_URI, get=stuck, timeout=0.5)
    leader_got: list[BaseException] = []

    def lead() -> None:
        try:
            remote.get()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            leader_got.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable: no answer"):
            remote.get()
        waited = time.monotonic() - started
        assert 1.5 <= waited < 2.3  # timeout + 1 s: the leader's fetch had its chance
    finally:
        release.set()
        leader.join(10)
    # The leader's own fetch failed once released: it answers with that failure too.
    assert len(leader_got) == 1 and "JWKS is unavailable: down" in str(leader_got[0])


def test_rebasing_with_trailing_slashes_and_look_alike_prefixes() -> None:
    base = "http://127.0.0.1:9"
    assert rebase("https://iss.example/v1/x", "https://iss.example/", f"{base}/") == f"{base}/v1/x"
    assert rebase("https://iss.example/other/x", "https://iss.example/X", base) == \
        "https://iss.example/other/x"
    assert rebase("https://iss.example/X/v1", "https://iss.example/X", f"{base}/X") == \
        f"{base}/X/v1"


def test_a_connection_goes_to_the_urls_port_with_the_callers_timeout() -> None:
    for url, port, target in (("https://iss.example/a?b=1", 443, "/a?b=1"),
                              ("https://iss.example:8443", 8443, "/"),
                              ("http://127.0.0.1", 80, "/"),
                              ("http://127.0.0.1:8080/x", 8080, "/x")):
        connection, got = _connection(url, 2.5)
        assert (connection.host, connection.port, connection.timeout, got) == \
            (url.split("/")[2].split(":")[0], port, 2.5, target)
        if url.startswith("https"):
            context = connection._context  # type: ignore[attr-defined]
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_body_of_several_reads_is_joined_whole(hostile: str) -> None:
    body = http_get(f"{hostile}/big", {}, limit=200_000).body
    assert body == bytes(range(256)) * 781 + b"end!"


def test_the_etag_is_sent_only_when_one_was_given() -> None:
    clock = FixedClock(START)
    script = Script(_set("a", **{"cache-control": "max-age=10"}))
    remote = RemoteJwks(JWKS_URI, clock=clock, get=script)
    remote.get()
    clock.advance(10)
    remote.get()
    assert [sorted(sent) for sent in script.sent] == [["Accept"], ["Accept"]]


def test_a_jwks_that_is_not_json_is_named_in_the_failure() -> None:
    remote = RemoteJwks(JWKS_URI, clock=FixedClock(START),
                        get=Script(HttpResponse(200, {}, b"{")))
    with pytest.raises(InvalidSoftwareStatement, match=re.escape(f"{JWKS_URI} is not JSON")):
        remote.get()


def test_backing_off_serves_the_last_good_set_up_to_max_stale_itself() -> None:
    clock = FixedClock(START)
    remote = RemoteJwks(JWKS_URI, clock=clock, max_stale=1000, min_refresh_interval=60,
                        get=Script(_set("a", **{"cache-control": "max-age=100"}), DOWN))
    good = remote.get("a")
    clock.advance(970)  # expired: a refresh, which fails
    assert remote.get("a") is good
    assert remote.fetches == 2
    clock.advance(30)  # backing off, exactly max_stale after the good fetch: served, not fetched
    assert remote.get("a") is good
    assert remote.fetches == 2


def test_a_server_dripping_its_headers_is_cut_off_at_the_deadline(hostile: str) -> None:
    """http.client reads the status line and headers with no deadline of its own: without the
    watchdog that shuts the socket, a header line a byte every 0.2 s holds the fetch for as
    long as the server likes (5 s here)."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="no complete answer"):
        http_get(f"{hostile}/drip-headers", {}, limit=1024, timeout=1.0)
    assert time.monotonic() - started < 3.0


def test_a_connect_that_is_never_accepted_ends_at_the_timeout() -> None:
    """A listener whose queue is full drops the SYN, so connect() waits on the per-read timeout
    the connection was made with (the deadline's watchdog starts once connected)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))  # fills the queue
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            http_get(f"http://127.0.0.1:{port}/", {}, limit=1024, timeout=0.5)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    try:
        started = time.monotonic()
        worker.start()
        worker.join(5.0)
        assert not worker.is_alive(), "connect() was still waiting 5 s after a 0.5 s timeout"
        assert time.monotonic() - started < 5.0
        assert len(outcome) == 1 and isinstance(outcome[0], FetchError)
        assert "unavailable" in str(outcome[0])
    finally:
        queued.close()
        listener.close()
        worker.join(5.0)
