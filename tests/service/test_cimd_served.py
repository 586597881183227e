"""A served issuer (`issuer serve` on 127.0.0.1) hosting a Client ID Metadata Document, resolved
end to end by the project's resolver, PyJWT, `issuer verify --client-id` and the Authlib
example authorization server (examples/authlib_cimd_server.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.cimd import CHANNEL, HOSTED_PRINCIPAL
from issuer.core.errors import InvalidClientId
from issuer.verifier.cimd import ClientIdResolver
from issuer.verifier.trust import StatementVerifier, TrustedIssuer
from tests.conftest import installed_issuer
from tests.service.test_served import free_port, new_home, start

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import authlib_cimd_server  # noqa: E402

TEMPLATE = """
description = "An MCP client whose metadata document the issuer hosts"
lifetime = "30d"
cimd = true
[claims]
software_id = "hosted-agent-1"
client_name = "Hosted Agent"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code"]
response_types = ["code"]
redirect_uris = ["https://agent.example.com/callback"]
scope = "files.read"
"""


@dataclass
class Hosting:
    url: str
    home: Path
    env: dict[str, str]

    @property
    def client_id(self) -> str:
        return f"{self.url}/clients/hosted-agent"

    def resolver(self, unsafe_allow_loopback: bool = False) -> ClientIdResolver:
        verifier = StatementVerifier(trusted=[TrustedIssuer(
            issuer=self.url, jwks_uri=f"{self.url}/.well-known/jwks.json")])
        return ClientIdResolver(verifier, unsafe_allow_loopback=unsafe_allow_loopback)

    def issuer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([installed_issuer(), *args, "--config", str(self.home / "issuer.toml")],
                              env=self.env, text=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def hosting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosting]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home, env = new_home(tmp_path_factory.mktemp("cimd"), url, rate_limit='"unlimited"')
    (home / "templates" / "hosted-agent.toml").write_text(TEMPLATE)
    process = start(home, env, port)
    yield Hosting(url, home, env)
    process.kill()
    process.wait(timeout=10)


def test_served_document_resolves_end_to_end(hosting: Hosting) -> None:
    response = httpx.get(hosting.client_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["client_id"] == hosting.client_id
    max_age = int(response.headers["cache-control"].removeprefix("public, max-age="))
    client = hosting.resolver(unsafe_allow_loopback=True).resolve(hosting.client_id)
    assert client.statement is not None and client.statement.issuer == hosting.url
    assert client.disagreements == ()
    assert client.metadata["redirect_uris"] == ["https://agent.example.com/callback"]
    # The statement verifies with PyJWT from the served JWKS, and outlives any cached copy.
    token = document["software_statement"]
    key = jwt.PyJWKClient(f"{hosting.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["ES256"], issuer=hosting.url)
    assert claims["client_name"] == "Hosted Agent"
    assert 0 < max_age <= (claims["exp"] - claims["iat"]) // 10
    authority = Authority.from_config(hosting.home / "issuer.toml", env={})
    record = authority.audit.statement(claims["jti"])
    assert (record.channel, record.principal) == (CHANNEL, HOSTED_PRINCIPAL)
    authority.close()
    # Asked again, the same document: nothing minted per request.
    assert httpx.get(hosting.client_id).json() == document


def test_served_document_never_redirects(hosting: Hosting) -> None:
    slash = httpx.get(hosting.client_id + "/")
    assert slash.status_code == 404 and "location" not in slash.headers
    assert slash.json()["error"] == "not_found"
    plain = httpx.get(f"{hosting.url}/clients/desktop-agent")
    assert plain.status_code == 404 and "cimd = true" in plain.json()["error_description"]
    (hosting.home / "templates" / "broken.toml").write_text("cimd = true\n[claims\n")
    broken = httpx.get(f"{hosting.url}/clients/broken")
    assert broken.status_code == 409 and broken.json()["error"] == "invalid_template"


def test_without_the_development_allowance_loopback_is_refused(hosting: Hosting) -> None:
    with pytest.raises(InvalidClientId, match="https"):
        hosting.resolver().resolve(hosting.client_id)


def test_issuer_verify_client_id(hosting: Hosting) -> None:
    local = hosting.issuer("verify", "--client-id", hosting.client_id, "--unsafe-allow-loopback")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["client_name"] == "Hosted Agent"
    assert f"verified: client_id {hosting.client_id}" in local.stderr
    remote = hosting.issuer("verify", "--client-id", hosting.client_id, "--unsafe-allow-loopback",
                            "--jwks", f"{hosting.url}/.well-known/jwks.json", "--json")
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["disagreements"] == []
    refused = hosting.issuer("verify", "--client-id", hosting.client_id)
    assert refused.returncode == 1
    assert refused.stderr.startswith("issuer: error: client_id") and "https" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(b"v" * 40).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


def test_authlib_server_accepts_the_cimd_client(hosting: Hosting) -> None:
    server = TestClient(authlib_cimd_server.create_app(
        hosting.resolver(unsafe_allow_loopback=True)), base_url="https://as.example")
    advertised = server.get("/.well-known/oauth-authorization-server").json()
    assert advertised["client_id_metadata_document_supported"] is True
    verifier, challenge = pkce()
    query = {"response_type": "code", "client_id": hosting.client_id, "state": "s1",
             "redirect_uri": "https://agent.example.com/callback", "scope": "files.read",
             "code_challenge": challenge, "code_challenge_method": "S256"}
    answer = server.get("/authorize", params=query, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == query["redirect_uri"]
    params = parse_qs(location.query)
    assert params["state"] == ["s1"]
    token = server.post("/token", data={
        "grant_type": "authorization_code", "code": params["code"][0],
        "redirect_uri": query["redirect_uri"], "client_id": hosting.client_id,
        "code_verifier": verifier})
    assert token.status_code == 200, token.text
    assert token.json()["token_type"].lower() == "bearer" and token.json()["access_token"]
    decision = server.app.state.decisions[-1]  # type: ignore[attr-defined]
    assert decision["statement_issuer"] == hosting.url and decision["disagreements"] == []
    # A redirect URI the document does not list is refused, and not redirected to.
    wrong = server.get("/authorize", params={**query, "redirect_uri": "https://evil.example/cb"},
                       follow_redirects=False)
    assert wrong.status_code == 400 and "location" not in wrong.headers
    # A client id without a document (here: a template not hosted) is an invalid client.
    missing = server.get("/authorize", params={
        **query, "client_id": f"{hosting.url}/clients/desktop-agent"}, follow_redirects=False)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_client"
    assert "HTTP 404" in missing.json()["error_description"]


def test_template_change_renews_the_served_statement(hosting: Hosting) -> None:
    before = httpx.get(hosting.client_id).json()
    path = hosting.home / "templates" / "hosted-agent.toml"
    path.write_text(TEMPLATE.replace("Hosted Agent", "Hosted Agent, renamed"))
    after = httpx.get(hosting.client_id).json()
    assert after["client_name"] == "Hosted Agent, renamed"
    assert after["software_statement"] != before["software_statement"]
    events = hosting.issuer("audit", "list", "--json")
    assert events.returncode == 0, events.stderr
    client = hosting.resolver(unsafe_allow_loopback=True).resolve(hosting.client_id)
    assert client.metadata["client_name"] == "Hosted Agent, renamed"
    authority = Authority.from_config(hosting.home / "issuer.toml", env={})
    reasons = [e.data["reason"] for e in authority.audit.events(type_prefix="cimd.renewed")]
    authority.close()
    assert reasons[-1] == "template changed"
