"""The verifier toolkit: trusted issuers, the remote JWKS cache, historical keys."""

from __future__ import annotations

import json
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url
from issuer.core.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement
from issuer.core.statements import MintRequest, encode_payload
from issuer.service.app import create_app
from issuer.verifier.remote import FetchError, HttpResponse, RemoteJwks, cache_lifetime, http_get
from issuer.verifier.trust import StatementVerifier, TrustedIssuer
from tests.conftest import START

ISS = "https://issuer.example.com"
JWKS_URI = f"{ISS}/.well-known/jwks.json"


class FakeIssuer:
    """The issuer's service in-process, behind a fetch function that counts and can fail."""

    def __init__(self, auth: Authority) -> None:
        self.client = TestClient(create_app(auth, jwks_recheck=0), raise_server_exceptions=False)
        self.fetches: list[str] = []
        self.down = False
        self.extra_headers: dict[str, str] = {}

    def get(self, url: str, headers: Any) -> HttpResponse:
        self.fetches.append(url)
        if self.down:
            raise FetchError(f"{url} unavailable: connection refused")
        r = self.client.get(url.replace(ISS, ""), headers=dict(headers))
        if r.status_code not in (200, 304):
            raise FetchError(f"{url} answered HTTP {r.status_code}")
        merged = {k.lower(): v for k, v in r.headers.items()}
        merged.update(self.extra_headers)
        return HttpResponse(r.status_code, merged, r.content)


@pytest.fixture
def issuer_site(auth: Authority) -> FakeIssuer:
    return FakeIssuer(auth)


def verifier_for(site: FakeIssuer, clock: FixedClock, **options: Any) -> StatementVerifier:
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks_uri=JWKS_URI,
                                                        **options)], clock=clock)
    entry = verifier.issuer(ISS)
    assert entry.jwks is not None and entry.historical is not None
    entry.jwks._get = site.get
    entry.historical._get = site.get
    assert verifier.status is not None
    verifier.status.fetch = lambda uri: site.get(uri, {}).body
    return verifier


def mint(auth: Authority) -> str:
    return auth.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="ci",
                     channel="http").software_statement


def forged_kid(token: str, kid: str) -> str:
    header = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    return b64url(json.dumps(header).encode()) + "." + token.split(".", 1)[1]


def test_trusted_issuer_verifies_and_others_are_unapproved(auth: Authority,
                                                           issuer_site: FakeIssuer) -> None:
    verifier = verifier_for(issuer_site, auth.clock)  # type: ignore[arg-type]
    token = mint(auth)
    assert verifier.verify(token).claims["iss"] == ISS
    other = auth.keystore.signer().sign(encode_payload({"iss": "https://evil.example",
                                                        "iat": START, "exp": START + 60}))
    before = len(issuer_site.fetches)
    with pytest.raises(UnapprovedSoftwareStatement) as info:
        verifier.verify(other)
    assert info.value.error == "unapproved_software_statement"
    assert len(issuer_site.fetches) == before  # nothing fetched for an untrusted issuer


def test_a_burst_of_forged_kids_causes_at_most_one_fetch(auth: Authority,
                                                         issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    token = mint(auth)
    verifier.verify(token)
    jwks_fetches = lambda: sum(u.endswith("jwks.json") for u in issuer_site.fetches)  # noqa: E731
    assert jwks_fetches() == 1
    for i in range(200):  # within the refresh interval: no fetch at all
        with pytest.raises(InvalidSoftwareStatement):
            verifier.verify(forged_kid(token, f"forged-{i}"))
    assert jwks_fetches() == 1
    clock.advance(61)
    for i in range(200):
        with pytest.raises(InvalidSoftwareStatement):
            verifier.verify(forged_kid(token, f"again-{i}"))
    assert jwks_fetches() == 2  # one refresh for the whole burst
    verifier.verify(token)  # the real key still verifies from the cache
    assert jwks_fetches() == 2


def test_threads_share_one_refresh(auth: Authority, issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    token = mint(auth)
    errors: list[BaseException] = []

    def burst() -> None:
        for i in range(50):
            try:
                verifier.verify(forged_kid(token, f"t-{threading.get_ident()}-{i}"))
            except InvalidSoftwareStatement:
                pass
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(u.endswith("jwks.json") for u in issuer_site.fetches) == 1


def test_cache_control_and_etag(auth: Authority, issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    remote = RemoteJwks(JWKS_URI, clock=clock, get=issuer_site.get)
    sent: list[dict[str, str]] = []
    real = issuer_site.get

    def spy(url: str, headers: Any) -> HttpResponse:
        sent.append(dict(headers))
        return real(url, headers)

    remote._get = spy
    first = remote.get()
    clock.advance(299)  # the service says max-age=300
    assert remote.get() is first and len(sent) == 1
    clock.advance(2)
    assert remote.get() == first and len(sent) == 2
    assert sent[1]["If-None-Match"].startswith('"')  # revalidated with the ETag: 304
    new = auth.keys.generate("Ed25519", actor="t", channel="cli")
    clock.advance(301)
    assert new.kid in {k["kid"] for k in remote.get()["keys"]} and len(sent) == 3
    assert cache_lifetime({"cache-control": "no-store"}, 300, 86400) == 0
    assert cache_lifetime({"cache-control": "public, max-age=999999"}, 300, 86400) == 86400
    assert cache_lifetime({}, 300, 86400) == 300


def test_last_good_set_serves_while_the_issuer_is_down_for_a_bounded_time(
        auth: Authority, issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    token = mint(auth)
    verifier.verify(token)
    issuer_site.down = True
    clock.advance(3600)
    assert verifier.verify(token)  # stale but within max_stale (a day)
    attempts = len(issuer_site.fetches)
    for _ in range(20):
        assert verifier.verify(token)
    assert len(issuer_site.fetches) == attempts  # backs off instead of hammering the issuer
    clock.advance(86400)
    with pytest.raises(InvalidSoftwareStatement, match="JWKS is unavailable"):
        verifier.verify(token)
    issuer_site.down = False
    clock.advance(61)
    assert verifier.verify(token)


def test_revoked_key_is_explained_from_historical_keys(auth: Authority,
                                                       issuer_site: FakeIssuer) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False)
    token = mint(auth)
    old = auth.keystore.active().kid
    auth.keys.revoke(old, "compromised", actor="sec", channel="cli", force=True)
    clock.advance(301)
    with pytest.raises(InvalidSoftwareStatement, match=rf"its key {old} was revoked \(compromised\)"):
        verifier.verify(token)
    with pytest.raises(InvalidSoftwareStatement, match="nor in its historical keys"):
        verifier.verify(forged_kid(token, "never-existed"))


@pytest.mark.parametrize("options", [{"max_age": 3600}, {"require_exp": False}])
def test_issuer_options(auth: Authority, issuer_site: FakeIssuer, options: dict) -> None:
    clock = FixedClock(START)
    verifier = verifier_for(issuer_site, clock, check_status=False, **options)
    no_exp = auth.keystore.signer().sign(encode_payload({"iss": ISS, "iat": START}))
    token = mint(auth)
    if "max_age" in options:
        assert verifier.verify(token)
        clock.advance(3600 + 61)
        with pytest.raises(InvalidSoftwareStatement, match="up to 3600s old"):
            verifier.verify(token)
        with pytest.raises(InvalidSoftwareStatement, match="claim 'exp' is missing"):
            verifier.verify(no_exp)
    else:
        assert verifier.verify(no_exp).claims == {"iss": ISS, "iat": START}


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of jwks_uri, jwks"):
        TrustedIssuer(issuer=ISS)
    with pytest.raises(ValueError, match="not allowed"):
        TrustedIssuer(issuer=ISS, jwks={"keys": []}, algorithms=["HS256"])
    with pytest.raises(ValueError, match="must use https"):
        TrustedIssuer(issuer=ISS, jwks_uri="http://issuer.example.com/jwks.json")


# --- real HTTP: size and time bounds -----------------------------------------------------------


@pytest.fixture
def slow_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/jwks.json"
    sock.close()


def test_fetches_are_bounded_in_time(slow_server: str) -> None:
    with pytest.raises(FetchError, match="unavailable"):
        http_get(slow_server, {}, limit=1024, timeout=0.5)


def test_fetches_are_bounded_in_size(file_server: tuple[str, Path]) -> None:
    base, directory = file_server
    (directory / "big.json").write_text(json.dumps({"keys": [{"kty": "x" * 2_000_000}]}))
    url = f"{base}/big.json"
    with pytest.raises(FetchError, match="larger than"):
        http_get(url, {}, limit=1024 * 1024)
    with pytest.raises(InvalidSoftwareStatement, match="larger than"):
        RemoteJwks(url).get()
