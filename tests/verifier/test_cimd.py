"""The Client ID Metadata Document resolver, against a real HTTP server on 127.0.0.1 that
answers what each test sets: documents, redirects, oversized bodies, errors."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from issuer.core.authority import Authority, init_issuer
from issuer.core.cimd import build_document
from issuer.core.clock import FixedClock
from issuer.core.errors import (
    InvalidClientId,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
)
from issuer.core.statements import MintRequest
from issuer.verifier.cimd import ClientIdResolver, address_problem
from issuer.verifier.trust import StatementVerifier, TrustedIssuer
from tests.conftest import START

ISS = "https://issuer.example.com"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class DocumentServer:
    """What the client's web server answers, per path; counts requests."""

    base: str
    answers: dict[str, Answer] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[DocumentServer]:
    state = DocumentServer("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.hits.append(self.path)
            answer = state.answers.get(self.path, Answer(404, b"{}"))
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


CLAIMS = {"client_name": "Agent", "token_endpoint_auth_method": "none",
          "grant_types": ["authorization_code"], "response_types": ["code"],
          "redirect_uris": ["https://agent.example.com/cb"], "software_id": "agent-1"}
TEMPLATE = "\n".join(['description = "CIMD client"', 'lifetime = "30d"', "[claims]"]
                     + [f"{k} = {json.dumps(v)}" for k, v in CLAIMS.items()]) + "\n"


def statement_of(auth: Authority, template: str = "agent") -> str:
    return auth.mint(MintRequest(template), principal="t", channel="cimd").software_statement


@pytest.fixture
def issuer_auth(auth: Authority, home: Path) -> Authority:
    (home / "templates" / "agent.toml").write_text(TEMPLATE)
    return auth


def resolver(auth: Authority, **options: Any) -> ClientIdResolver:
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks())],
                                 clock=auth.clock, status=auth.status_client())
    options.setdefault("unsafe_allow_loopback", True)
    return ClientIdResolver(verifier, clock=auth.clock, **options)


def serve_document(server: DocumentServer, path: str, document: Any,
                   **headers: str) -> str:
    server.answers[path] = Answer(body=json.dumps(document).encode(),
                                  headers={"Content-Type": "application/json", **headers})
    return server.url(path)


def good(server: DocumentServer, auth: Authority, path: str = "/client.json",
         **changes: Any) -> str:
    url = server.url(path)
    document = {**build_document(url, CLAIMS, statement_of(auth)), **changes}
    return serve_document(server, path, document, **{"Cache-Control": "max-age=60"})


def test_resolves_a_good_document(server: DocumentServer, issuer_auth: Authority) -> None:
    url = good(server, issuer_auth)
    client = resolver(issuer_auth).resolve(url)
    assert client.client_id == url
    assert client.metadata == CLAIMS
    assert client.statement is not None and client.statement.issuer == ISS
    assert client.disagreements == ()


def test_client_id_differing_from_its_url(server: DocumentServer, issuer_auth: Authority) -> None:
    url = good(server, issuer_auth, client_id="https://elsewhere.example.com/client.json")
    with pytest.raises(InvalidClientMetadata, match="is not the document's URL"):
        resolver(issuer_auth).resolve(url)


def test_a_redirect_is_not_followed(server: DocumentServer, issuer_auth: Authority) -> None:
    target = good(server, issuer_auth, path="/real.json")
    server.answers["/moved.json"] = Answer(302, b"", {"Location": target})
    with pytest.raises(InvalidClientId, match="redirect"):
        resolver(issuer_auth).resolve(server.url("/moved.json"))
    assert server.hits == ["/moved.json"]  # the Location was never fetched


def test_an_oversized_body(server: DocumentServer, issuer_auth: Authority) -> None:
    url = good(server, issuer_auth, padding="x" * 5200)
    with pytest.raises(InvalidClientId, match="larger than 5120 bytes"):
        resolver(issuer_auth).resolve(url)
    # A smaller limit is the server's to set.
    small = good(server, issuer_auth, path="/small.json")
    with pytest.raises(InvalidClientId, match="larger than 100 bytes"):
        resolver(issuer_auth, max_bytes=100).resolve(small)


def test_a_shared_secret_method(server: DocumentServer, issuer_auth: Authority) -> None:
    url = good(server, issuer_auth, token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(InvalidClientMetadata, match="client_secret_basic relies on a shared"):
        resolver(issuer_auth).resolve(url)


def test_a_statement_from_an_untrusted_issuer(server: DocumentServer, issuer_auth: Authority,
                                              tmp_path: Path) -> None:
    other = init_issuer(tmp_path / "other", issuer="https://other.example.com", alg="ES256",
                        actor="t", env={}, clock=FixedClock(START))
    (tmp_path / "other" / "templates" / "agent.toml").write_text(TEMPLATE)
    url = server.url("/client.json")
    serve_document(server, "/client.json", build_document(url, CLAIMS, statement_of(other)))
    other.close()
    with pytest.raises(UnapprovedSoftwareStatement, match="other.example.com"):
        resolver(issuer_auth).resolve(url)


def test_a_revoked_statement(server: DocumentServer, issuer_auth: Authority) -> None:
    url = server.url("/client.json")
    serve_document(server, "/client.json", build_document(url, CLAIMS, statement_of(issuer_auth)),
                   **{"Cache-Control": "max-age=3600"})
    checker = resolver(issuer_auth)
    client = checker.resolve(url)
    assert client.statement is not None
    issuer_auth.set_status(client.statement.claims["jti"], "revoked", "compromised build",
                           actor="t", channel="cli")
    # A document cached for an hour is refused as soon as the status list, cached for its
    # ttl (300 s), says its statement is revoked ...
    assert isinstance(issuer_auth.clock, FixedClock)
    issuer_auth.clock.advance(301)
    with pytest.raises(InvalidSoftwareStatement, match="revoked by its issuer"):
        checker.resolve(url)
    # ... and a fresh resolver refuses it too.
    with pytest.raises(InvalidSoftwareStatement, match="revoked by its issuer"):
        resolver(issuer_auth).resolve(url)


def test_disagreements_are_reported_and_the_statement_wins(server: DocumentServer,
                                                            issuer_auth: Authority) -> None:
    url = good(server, issuer_auth, client_name="Totally Official Bank",
               logo_uri="https://agent.example.com/logo.png")
    client = resolver(issuer_auth).resolve(url)
    found = {d.claim: d.as_json() for d in client.disagreements}
    assert found == {
        "client_name": {"claim": "client_name", "kind": "differs",
                        "document": "Totally Official Bank", "statement": "Agent"},
        "logo_uri": {"claim": "logo_uri", "kind": "not in the statement",
                     "document": "https://agent.example.com/logo.png"},
    }
    assert client.metadata["client_name"] == "Agent"
    with pytest.raises(InvalidClientMetadata, match="disagrees with its software statement"):
        resolver(issuer_auth, on_disagreement="reject").resolve(url)
    # A document that leaves out what its statement says is reported too.
    document = build_document(url, {k: v for k, v in CLAIMS.items() if k != "software_id"},
                              statement_of(issuer_auth))
    serve_document(server, "/client.json", document)
    missing = resolver(issuer_auth).resolve(url)
    assert [d.as_json()["kind"] for d in missing.disagreements] == ["missing from the document"]
    assert missing.metadata["software_id"] == "agent-1"


def test_private_addresses_without_the_allowance(server: DocumentServer,
                                                 issuer_auth: Authority) -> None:
    url = good(server, issuer_auth)
    strict = resolver(issuer_auth, unsafe_allow_loopback=False)
    with pytest.raises(InvalidClientId, match="must use the https scheme"):
        strict.resolve(url)
    # An https client id whose name resolves to loopback, a private or a link-local address is
    # refused before any connection is made.
    for address in ("127.0.0.1", "10.0.0.7", "192.168.1.2", "169.254.169.254", "::1",
                    "fd00::1", "::ffff:10.0.0.7", "100.64.0.1", "0.0.0.0"):
        names = resolver(issuer_auth, unsafe_allow_loopback=False,
                         resolve_host=lambda host, port, a=address: ["93.184.215.14", a])
        with pytest.raises(InvalidClientId, match=f"resolves to {address}.*not fetched"):
            names.resolve("https://agent.example.com/client.json")
        assert names.fetches == 0
    assert server.hits == []
    # The development allowance admits loopback only, never other private addresses.
    assert address_problem("127.0.0.1", allow_loopback=True) is None
    assert address_problem("10.0.0.7", allow_loopback=True) is not None
    assert address_problem("93.184.215.14", allow_loopback=False) is None


def test_caching_follows_the_headers_and_never_keeps_errors(server: DocumentServer,
                                                            issuer_auth: Authority) -> None:
    clock = issuer_auth.clock
    assert isinstance(clock, FixedClock)
    checker = resolver(issuer_auth)
    url = server.url("/client.json")
    server.answers["/client.json"] = Answer(500, b"{}")
    with pytest.raises(InvalidClientId, match="HTTP 500"):
        checker.resolve(url)
    good(server, issuer_auth)  # max-age=60
    checker.resolve(url)
    checker.resolve(url)
    assert server.hits == ["/client.json"] * 2  # the error was not cached, the document was
    clock.advance(61)
    checker.resolve(url)
    assert len(server.hits) == 3
    document = json.loads(server.answers["/client.json"].body)
    serve_document(server, "/client.json", document, **{"Cache-Control": "no-store"})
    clock.advance(61)
    checker.resolve(url)
    checker.resolve(url)
    assert len(server.hits) == 5
    server.answers["/client.json"] = Answer(404, b"{}")
    with pytest.raises(InvalidClientId, match="HTTP 404"):
        checker.resolve(url)


@pytest.mark.parametrize(("answer", "match"), [
    (Answer(200, b'{"a": 1}', {"Content-Type": "text/html"}), "not application/json"),
    (Answer(200, b"not json", {"Content-Type": "application/json"}), "is not JSON"),
    (Answer(200, b"[]", {"Content-Type": "application/json"}), "must be a JSON object"),
    (Answer(204, b"", {}), "only 200 is a document"),
])
def test_malformed_answers(server: DocumentServer, issuer_auth: Authority, answer: Answer,
                           match: str) -> None:
    server.answers["/c.json"] = answer
    with pytest.raises((InvalidClientId, InvalidClientMetadata), match=match):
        resolver(issuer_auth).resolve(server.url("/c.json"))


def test_a_statement_is_required_unless_said_otherwise(server: DocumentServer,
                                                       issuer_auth: Authority) -> None:
    url = server.url("/c.json")
    serve_document(server, "/c.json", {"client_id": url, **CLAIMS})
    with pytest.raises(InvalidSoftwareStatement, match="carries no software_statement"):
        resolver(issuer_auth).resolve(url)
    client = resolver(issuer_auth, require_statement=False).resolve(url)
    assert client.statement is None and client.metadata == CLAIMS


def test_a_statement_naming_a_shared_secret_method_is_refused(server: DocumentServer,
                                                              issuer_auth: Authority,
                                                              home: Path) -> None:
    (home / "templates" / "secret.toml").write_text(
        TEMPLATE.replace('"none"', '"client_secret_basic"'))
    url = server.url("/c.json")
    serve_document(server, "/c.json", build_document(url, CLAIMS,
                                                     statement_of(issuer_auth, "secret")))
    with pytest.raises(InvalidClientMetadata, match="with its statement's values.*shared secret"):
        resolver(issuer_auth).resolve(url)


def test_the_cache_is_bounded(server: DocumentServer, issuer_auth: Authority) -> None:
    checker = resolver(issuer_auth, max_entries=2)
    urls = [good(server, issuer_auth, path=f"/c{i}.json") for i in range(3)]
    for url in urls:
        checker.resolve(url)
    checker.resolve(urls[2])
    checker.resolve(urls[1])
    assert checker.fetches == 3  # the two newest stayed cached
    checker.resolve(urls[0])
    assert checker.fetches == 4  # the oldest had been dropped
