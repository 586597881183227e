"""A real `issuer serve` and a real Authlib registration endpoint (examples/authlib_server.py):
statements register with their values winning; every kind of bad statement is refused with the
right RFC 7591 section 3.2.2 error code."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url, b64url_decode
from issuer.core.statements import encode_payload
from tests.conftest import installed_issuer
from tests.service.test_served import free_port, new_home, start

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import authlib_server  # noqa: E402


@dataclass
class World:
    url: str
    home: Path
    env: dict[str, str]
    minter: str
    admin: str
    server: TestClient  # the authorization server (Authlib)

    def mint(self, version: str = "1.4.2") -> str:
        r = httpx.post(f"{self.url}/v1/statements", headers={"Authorization": f"Bearer {self.minter}"},
                       json={"template": "mcp-connector", "claims": {"software_version": version}})
        assert r.status_code == 201, r.text
        return str(r.json()["software_statement"])

    def register(self, token: str, **request: Any) -> httpx.Response:
        return self.server.post("/register", json={"software_statement": token, **request})

    def issuer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([installed_issuer(), *args, "--config", str(self.home / "issuer.toml")],
                              env=self.env, text=True, capture_output=True, timeout=60)

    def authority(self, clock: FixedClock | None = None) -> Authority:
        return Authority.from_config(self.home / "issuer.toml", env={}, clock=clock)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home, env = new_home(tmp_path, url, jwks_max_age="1", rate_limit='"unlimited"')
    config = home / "issuer.toml"
    process = start(home, env, port)

    def token(*args: str) -> str:
        out = subprocess.run([installed_issuer(), "tokens", "create", *args, "--json", "--config",
                              str(config)], env=env, text=True, capture_output=True, check=True)
        return str(json.loads(out.stdout)["token"])

    w = World(url, home, env, token("ci", "--role", "minter", "--template", "mcp-connector"),
              token("ops", "--role", "admin"),
              TestClient(authlib_server.create_app(url)))
    yield w
    process.kill()
    process.wait(timeout=10)


def assert_refused(response: httpx.Response, code: str, text: str = "") -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == code, body
    assert text in body.get("error_description", ""), body


def header_of(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[0]))


def reheader(token: str, header: dict[str, Any]) -> str:
    return b64url(json.dumps(header).encode()) + "." + token.split(".", 1)[1]


def test_a_fresh_statement_registers_and_its_values_win(world: World) -> None:
    token = world.mint()
    r = world.register(token, client_name="Evil Corp", redirect_uris=["https://evil.example/cb"],
                       token_endpoint_auth_method="none", software_version="0.0.1")
    assert r.status_code == 201, r.text
    client = r.json()
    assert client["client_id"]
    assert client["client_name"] == "Example Calendar Connector"
    assert client["redirect_uris"] == ["https://connectors.example.com/calendar/oauth/callback"]
    assert client["token_endpoint_auth_method"] == "private_key_jwt"
    assert client["jwks_uri"] == "https://connectors.example.com/calendar/jwks.json"
    stored = world.server.app.state.clients[client["client_id"]]  # type: ignore[attr-defined]
    audit = stored["registration_audit"]
    assert audit["decision"] == "accepted" and audit["statement_issuer"] == world.url
    assert audit["statement_digest"] == hashlib.sha256(token.encode()).hexdigest()


def test_bad_statements_are_refused_with_the_right_codes(world: World) -> None:
    token = world.mint()
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))

    tampered = ".".join([header, b64url(json.dumps({**claims, "scope": "admin"}).encode()), signature])
    assert_refused(world.register(tampered), "invalid_software_statement", "signature")

    auth = world.authority(FixedClock(1_600_000_000))
    expired = auth.keystore.signer().sign(encode_payload(
        {**claims, "iat": 1_600_000_000, "exp": 1_600_086_400}))
    wrong_issuer = auth.keystore.signer().sign(encode_payload({**claims, "iss": "https://evil.example"}))
    auth.close()
    assert_refused(world.register(expired), "invalid_software_statement", "expired")
    assert_refused(world.register(wrong_issuer), "unapproved_software_statement", "not trusted")

    none = reheader(token, {"alg": "none", "typ": "JWT"}).rsplit(".", 1)[0] + "."
    assert_refused(world.register(none), "invalid_software_statement", "alg 'none'")

    jwks = httpx.get(f"{world.url}/.well-known/jwks.json").json()
    public = json.dumps(jwks["keys"][0]).encode()
    signing_input = reheader(token, {"alg": "HS256", "kid": header_of(token)["kid"]}).rsplit(".", 1)[0]
    hs = signing_input + "." + b64url(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())
    assert_refused(world.register(hs), "invalid_software_statement", "alg 'HS256'")

    for member, value in (("jwk", jwks["keys"][0]), ("jku", f"{world.url}/.well-known/jwks.json"),
                          ("x5u", "https://evil.example/cert"), ("x5c", ["MIIB"])):
        forged = reheader(token, {**header_of(token), member: value})
        assert_refused(world.register(forged), "invalid_software_statement", f"'{member}'")

    oversized = token + "A" * 70_000
    assert_refused(world.register(oversized), "invalid_software_statement", "longer than")
    assert_refused(world.register("not-a-jws"), "invalid_software_statement")


def test_statements_of_a_revoked_key_are_refused(world: World) -> None:
    token = world.mint()
    kid = header_of(token)["kid"]
    assert world.register(token).status_code == 201
    revoked = world.issuer("keys", "revoke", kid, "--reason", "compromised", "--force")
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(2.2)  # the service sees the keyring within 1 s; the AS caches the JWKS for 1 s
    assert_refused(world.register(token), "invalid_software_statement", "revoked (compromised)")
    assert world.register(world.mint("2.0")).status_code == 201  # the next key took over


def test_revoked_statements_are_refused(world: World) -> None:
    token = world.mint()
    jti = json.loads(b64url_decode(token.split(".")[1]))["jti"]
    r = httpx.post(f"{world.url}/v1/statements/{jti}/revoke", json={"reason": "malicious"},
                   headers={"Authorization": f"Bearer {world.admin}"})
    assert r.status_code == 200
    assert_refused(world.register(token), "invalid_software_statement", "revoked by its issuer")
    assert world.register(world.mint("2.0")).status_code == 201


# --- the example served over HTTP (its documented run command, a real uvicorn) ----------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "authlib_server.py"


def start_example(env: dict[str, str], *args: str) -> tuple[str, subprocess.Popen[str]]:
    """``python examples/authlib_server.py <args> --port <port>``, as documented."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(EXAMPLE), *args, "--port", str(port)],
                               env=env, text=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the example server did not start")
        time.sleep(0.1)


@pytest.fixture
def served_as(world: World) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    url, process = start_example(world.env, "--issuer", world.url)
    yield url, process
    process.kill()
    process.wait(timeout=10)


def decisions_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    process.kill()
    assert process.stderr is not None
    return [json.loads(line) for line in process.stderr.read().splitlines()
            if line.startswith("{")]


def test_served_example_registers_as_rfc_7591_says(world: World,
                                                   served_as: tuple[str, Any]) -> None:
    url, _ = served_as
    token = world.mint()
    r = httpx.post(f"{url}/register", json={
        "software_statement": token, "client_name#de": "Böse GmbH", "client_name#fr": "Mal",
        "client_name": "Evil Corp", "token_endpoint_auth_method": "client_secret_basic"})
    assert r.status_code == 201, r.text
    client = r.json()
    assert client["software_statement"] == token  # RFC 7591 section 3.2.1
    assert client["client_name#de"] == "Example Kalender-Connector"  # the statement's
    assert "client_name#fr" not in client  # a variant of a claim the statement sets: dropped
    assert client["dpop_bound_access_tokens"] is True
    assert client["token_endpoint_auth_signing_alg"] == "ES256"
    assert client["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in client and "client_secret_expires_at" not in client


def test_served_example_refuses_other_kinds_and_hostile_input(
        world: World, served_as: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = served_as
    ref = json.loads(b64url_decode(world.mint().split(".")[1]))["status"]["status_list"]
    status_list = httpx.get(ref["uri"]).text  # public, no authentication
    historical = httpx.get(f"{world.url}/.well-known/historical-keys").text
    for token, text in ((status_list, "typ 'statuslist+jwt'"),
                        (historical, "typ 'jwk-set+jwt'")):
        r = httpx.post(f"{url}/register", json={"software_statement": token,
                                                "redirect_uris": ["https://evil.example/cb"]})
        assert_refused(r, "invalid_software_statement", text)
    deep = "[" * 20_000 + "]" * 20_000
    nested = b64url(b'{"alg":"ES256"}') + "." + b64url(deep.encode()) + ".c2ln"
    assert_refused(httpx.post(f"{url}/register", json={"software_statement": nested}),
                   "invalid_software_statement", "nested deeper")
    r = httpx.post(f"{url}/register", content='{"client_name": ' + deep + "}",
                   headers={"Content-Type": "application/json"})
    assert_refused(r, "invalid_client_metadata", "not JSON")
    r = httpx.post(f"{url}/register", content='{"client_name": ' + "[" * 40 + "]" * 40 + "}",
                   headers={"Content-Type": "application/json"})
    assert_refused(r, "invalid_client_metadata", "nested deeper")
    recorded = decisions_of(process)
    assert [d["decision"] for d in recorded] == ["rejected"] * 4
    assert [d["error"] for d in recorded] == ["invalid_software_statement"] * 3 + [
        "invalid_client_metadata"]


def test_the_example_verifies_a_staging_copy_of_an_issuer(tmp_path: Path) -> None:
    """The staging issuer signs as production (its iss, its status list URIs) but is served on
    127.0.0.1: the AS maps the base URL for keys and status lists, nothing else."""
    production = "https://connectors.example.com"
    port = free_port()
    staging = f"http://127.0.0.1:{port}"
    home, env = new_home(tmp_path, production, jwks_max_age="1", rate_limit='"unlimited"')
    issuer = start(home, env, port)
    try:
        def token(*args: str) -> str:
            out = subprocess.run([installed_issuer(), "tokens", "create", *args, "--json",
                                  "--config", str(home / "issuer.toml")], env=env, text=True,
                                 capture_output=True, check=True)
            return str(json.loads(out.stdout)["token"])

        minter = token("ci", "--role", "minter", "--template", "mcp-connector")
        admin = token("ops", "--role", "admin")
        r = httpx.post(f"{staging}/v1/statements", headers={"Authorization": f"Bearer {minter}"},
                       json={"template": "mcp-connector",
                             "claims": {"software_version": "1.0"}})
        assert r.status_code == 201, r.text
        statement = r.json()["software_statement"]
        claims = json.loads(b64url_decode(statement.split(".")[1]))
        assert claims["iss"] == production
        assert claims["status"]["status_list"]["uri"].startswith(production)
        url, example = start_example(env, "--issuer", production, "--base-url", staging)
        try:
            registered = httpx.post(f"{url}/register", json={"software_statement": statement})
            assert registered.status_code == 201, registered.text
            revoked = httpx.post(f"{staging}/v1/statements/{claims['jti']}/revoke",
                                 json={"reason": "malicious"},
                                 headers={"Authorization": f"Bearer {admin}"})
            assert revoked.status_code == 200, revoked.text
            # A fresh AS (no cached list) learns the revocation from the staging copy.
            example.kill()
            example.wait(timeout=10)
            url, example = start_example(env, "--issuer", production, "--base-url", staging)
            assert_refused(httpx.post(f"{url}/register", json={"software_statement": statement}),
                           "invalid_software_statement", "revoked by its issuer")
        finally:
            example.kill()
            example.wait(timeout=10)
    finally:
        issuer.kill()
        issuer.wait(timeout=10)
