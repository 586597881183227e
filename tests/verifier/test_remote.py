"""Remote fetching facing a hostile internet: no redirects, one deadline per fetch, no lock held
across the network, failures remembered briefly, status lists only from the issuer's origin
and only for statements that passed every cheap check."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url_decode
from issuer.core.errors import InvalidSoftwareStatement
from issuer.core.statements import encode_payload
from issuer.verifier import MemoryReplayCache, Registrar, RegistrationPolicy
from issuer.verifier.remote import (
    FetchError,
    HistoricalKeysClient,
    HttpResponse,
    RemoteJwks,
    http_get,
    rebase,
    same_origin,
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
        else:
            body = b'{"keys": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
    from issuer.verifier.remote import StatusListClient
    client = StatusListClient(clock=clock, fetch=lambda _: body.encode())
    return client.status(uri, idx, jwks=auth.jwks(), issuer=ISS)


def test_status_list_tokens_are_checked(auth: Authority) -> None:
    uri, idx, claims = _list_token(auth)
    signer = auth.keystore.signer()

    def sign(**changes: Any) -> str:
        return signer.sign(encode_payload({**claims, **changes}), typ="statuslist+jwt")

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
