"""Revoking statements: Token Status Lists, the status query, verifiers that check them."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.errors import Conflict, InvalidSoftwareStatement, NotFound
from issuer.core.statements import MintRequest
from issuer.service.app import create_app
from issuer.status import statuslist
from issuer.status.registry import IndexPermutation
from issuer.verifier.jose import verify_signature
from issuer.verifier.remote import StatusListClient
from issuer.verifier.statement import verify
from tests.conftest import START, Cli, assert_one_line_error, verified_statements

ISS = "https://issuer.example.com"


def mint(auth: Authority, version: str = "1") -> tuple[str, str]:
    result = auth.mint(MintRequest("desktop-agent", {"software_version": version}),
                       principal="ci", channel="http")
    return result.jti, result.software_statement


def claims_of(token: str) -> dict:
    from issuer.core.encoding import b64url_decode

    return json.loads(b64url_decode(token.split(".")[1]))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 1024, 4097])
def test_index_permutation_is_a_permutation(size: int) -> None:
    permute = IndexPermutation(b"k" * 32, size)
    indices = [permute(i) for i in range(size)]
    assert sorted(indices) == list(range(size))
    if size >= 100:
        assert indices != sorted(indices)  # not issue order
        assert indices != [permute(i) for i in range(size)][::-1]
    other = IndexPermutation(b"j" * 32, size)
    if size >= 100:
        assert indices != [other(i) for i in range(size)]  # keyed


def test_statements_carry_a_status_reference(auth: Authority) -> None:
    _, token = mint(auth)
    status = claims_of(token)["status"]
    assert set(status) == {"status_list"}
    ref = status["status_list"]
    assert re.fullmatch(r"https://issuer\.example\.com/v1/status-lists/[A-Za-z0-9_-]{11}", ref["uri"])
    assert 0 <= ref["idx"] < 131072


def test_indices_are_random_never_reused_and_lists_roll_over(home: Path) -> None:
    text = (home / "issuer.toml").read_text().replace("status_list_size = 131072",
                                                     "status_list_size = 1024")
    (home / "issuer.toml").write_text(text)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))
    results = auth.mint_many([MintRequest("desktop-agent", {"software_version": "1"})] * 1500,
                             principal="ci", channel="cli")
    refs = [claims_of(r.software_statement)["status"]["status_list"] for r in results]
    assert len({(r["uri"], r["idx"]) for r in refs}) == 1500
    lists = sorted({r["uri"] for r in refs}, key=[r["uri"] for r in refs].index)
    assert len(lists) == 2
    first = [r["idx"] for r in refs if r["uri"] == lists[0]]
    assert sorted(first) == list(range(1024))  # full, every index once
    assert first != sorted(first)
    auth.close()


def test_revoke_suspend_and_unsuspend(auth: Authority) -> None:
    jti, _ = mint(auth)
    sibling, _ = mint(auth)
    record, changed = auth.set_status(jti, "suspended", "investigating", actor="sec", channel="cli")
    assert changed and auth.status.status_of(jti) == statuslist.SUSPENDED
    _, changed = auth.set_status(jti, "active", "cleared", actor="sec", channel="cli")
    assert changed and auth.status.status_of(jti) == statuslist.VALID
    assert auth.set_status(jti, "active", "again", actor="sec", channel="cli")[1] is False
    record, changed = auth.set_status(jti, "revoked", "malicious connector", actor="sec",
                                      channel="cli")
    assert changed and record.revoked_at == START and record.revocation_reason == "malicious connector"
    again, changed = auth.set_status(record.digest, "revoked", "again", actor="sec", channel="cli")
    assert not changed and again.revocation_reason == "malicious connector"
    with pytest.raises(Conflict, match="revocation is final"):
        auth.set_status(jti, "suspended", "x", actor="sec", channel="cli")
    with pytest.raises(NotFound):
        auth.set_status("nope", "revoked", "x", actor="sec", channel="cli")
    events = [(e.type, e.actor, e.data["reason"]) for e in auth.audit.events(type_prefix="statement.")
              if e.type != "statement.issued"]
    assert events == [("statement.suspended", "sec", "investigating"),
                      ("statement.unsuspended", "sec", "cleared"),
                      ("statement.revoked", "sec", "malicious connector")]
    lst, _ = auth.status.status_list(
        claims_of(auth.audit.statement(jti).software_statement)["status"]["status_list"]["uri"].rsplit("/", 1)[1])
    ref = claims_of(auth.audit.statement(jti).software_statement)["status"]["status_list"]
    sib = claims_of(auth.audit.statement(sibling).software_statement)["status"]["status_list"]
    assert lst.get(ref["idx"]) == statuslist.INVALID and lst.get(sib["idx"]) == statuslist.VALID
    assert [r.jti for r in auth.audit.statements(revoked=True)] == [jti]
    from issuer.log.tlog import verify_log

    verify_log(auth.log)
    assert verified_statements(auth) == 2


def test_revocation_survives_a_restart_and_tampering_is_caught(home: Path, cli: Cli) -> None:
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))
    jti, token = mint(auth)
    auth.set_status(jti, "revoked", "pulled build", actor="sec", channel="cli")
    auth.close()
    again = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))
    with pytest.raises(InvalidSoftwareStatement, match="revoked by its issuer"):
        again.verify(token)
    again.close()
    conn = sqlite3.connect(home / "issuer.db")
    conn.execute("UPDATE statements SET revoked_at = NULL, revocation_reason = NULL")
    conn.commit()
    assert_one_line_error(cli("audit", "verify"), 1, "revoked_at/revocation_reason differ")


def test_status_list_client_caches_for_ttl(home: Path) -> None:
    clock = FixedClock(START)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    client = TestClient(create_app(auth, jwks_recheck=0))
    jti, token = mint(auth)
    _, sibling = mint(auth)

    def fetch(uri: str) -> bytes:
        response = client.get(uri.replace(ISS, ""), headers={"Accept": "application/statuslist+jwt"})
        assert response.status_code == 200
        return response.content

    status = StatusListClient(clock=clock, fetch=fetch)
    jwks = client.get("/.well-known/jwks.json").json()
    assert verify(token, jwks=jwks, issuer=ISS, clock=clock, status=status)
    assert verify(sibling, jwks=jwks, issuer=ISS, clock=clock, status=status)
    assert status.fetches == 1  # one list answers for both
    auth.set_status(jti, "revoked", "malicious", actor="sec", channel="cli")
    assert verify(token, jwks=jwks, issuer=ISS, clock=clock, status=status)  # cached list
    clock.advance(300)  # the list's ttl
    with pytest.raises(InvalidSoftwareStatement, match="revoked by its issuer"):
        verify(token, jwks=jwks, issuer=ISS, clock=clock, status=status)
    assert verify(sibling, jwks=jwks, issuer=ISS, clock=clock, status=status)
    assert status.fetches == 2
    assert verify(token, jwks=jwks, issuer=ISS, clock=clock, status=None)  # the explicit opt-out


def test_status_list_endpoint(auth: Authority) -> None:
    client = TestClient(create_app(auth, jwks_recheck=0))
    jti, token = mint(auth)
    auth.set_status(jti, "suspended", "checking", actor="sec", channel="cli")
    ref = claims_of(token)["status"]["status_list"]
    path = ref["uri"].replace(ISS, "")
    r = client.get(path)
    assert r.headers["content-type"] == "application/statuslist+jwt"
    assert r.headers["cache-control"] == "public, max-age=300"
    jwks = client.get("/.well-known/jwks.json").json()
    payload = json.loads(verify_signature(r.text, jwks))
    header = json.loads(__import__("base64").urlsafe_b64decode(r.text.split(".")[0] + "=="))
    assert header["typ"] == "statuslist+jwt" and header["kid"] == auth.keystore.active().kid
    assert payload["sub"] == ref["uri"] and payload["iss"] == ISS
    assert payload["iat"] == START and payload["exp"] == START + 86400 and payload["ttl"] == 300
    assert payload["status_list"]["bits"] == 2
    lst = statuslist.StatusList.from_json(payload["status_list"])
    assert lst.get(ref["idx"]) == statuslist.SUSPENDED and lst.size == 131072
    assert client.get(path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    # The unsigned form left the draft in -06: asking for it still gets the signed token.
    unsigned = client.get(path, headers={"Accept": "application/statuslist+json"})
    assert unsigned.headers["content-type"] == "application/statuslist+jwt"
    assert unsigned.text == r.text
    assert client.get("/v1/status-lists/nope").status_code == 404


def test_status_query(home: Path) -> None:
    clock = FixedClock(START)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    client = TestClient(create_app(auth, jwks_recheck=0))

    def ask(token: object) -> dict:
        r = client.post("/v1/status", json={"software_statement": token})
        assert r.status_code == 200, r.text
        return r.json()

    a, token_a = mint(auth)
    b, token_b = mint(auth)
    _, token_c = mint(auth)
    assert ask(token_a) == {"status": "active", "jti": a, "exp": START + 90 * 86400}
    auth.set_status(a, "revoked", "bad", actor="sec", channel="cli")
    auth.set_status(b, "suspended", "hmm", actor="sec", channel="cli")
    assert ask(token_a)["status"] == "revoked" and ask(token_a)["reason"] == "bad"
    assert ask(token_b)["status"] == "suspended"
    assert ask("eyJhbGciOiJub25lIn0.e30.") == {"status": "unknown"}
    assert ask("é" * 10) == {"status": "unknown"}
    assert ask(token_c[:-2] + "AA") == {"status": "unknown"}  # not what this issuer signed
    clock.advance(91 * 86400)
    assert ask(token_c)["status"] == "expired"
    for body in ({}, {"software_statement": 5}, {"software_statement": "x", "more": 1}, []):
        r = client.post("/v1/status", json=body)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_revoke_api(auth: Authority) -> None:
    client = TestClient(create_app(auth, jwks_recheck=0))
    tokens = {}
    for name, role, templates in (("admin", "admin", []), ("auditor", "auditor", []),
                                  ("ci", "minter", ["desktop-agent"])):
        tokens[name] = {"Authorization": "Bearer " + auth.tokens.create(
            name, role=role, templates=templates, rate_limit=None, actor="t", channel="cli",
            now=auth.now())[1]}
    jti, _ = mint(auth)
    for who in ("auditor", "ci"):
        r = client.post(f"/v1/statements/{jti}/revoke", json={"reason": "x"}, headers=tokens[who])
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert client.post(f"/v1/statements/{jti}/revoke", json={"reason": "x"}).status_code == 401
    r = client.post(f"/v1/statements/{jti}/revoke", json={"reason": "leaked"}, headers=tokens["admin"])
    assert r.status_code == 200 and r.json()["changed"] is True and r.json()["revoked_at"] == START
    r = client.post(f"/v1/statements/{jti}/revoke", json={"reason": "again"}, headers=tokens["admin"])
    assert r.status_code == 200 and r.json()["changed"] is False
    assert r.json()["revocation_reason"] == "leaked"
    assert auth.audit.events(type_prefix="statement.revoked")[0].actor == "admin"
    assert client.post("/v1/statements/nope/revoke", json={"reason": "x"},
                       headers=tokens["admin"]).status_code == 404
    for body in ({}, {"reason": ""}, {"reason": "x", "status": "gone"}, {"reason": 5}):
        r = client.post(f"/v1/statements/{jti}/revoke", json=body, headers=tokens["admin"])
        assert r.status_code == 400, body
    r = client.post(f"/v1/statements/{jti}/revoke", json={"reason": "x", "status": "suspended"},
                    headers=tokens["admin"])
    assert r.status_code == 409 and "final" in r.json()["error_description"]
    listed = client.get("/v1/statements", params={"revoked": "true"}, headers=tokens["auditor"]).json()
    assert [(s["jti"], s["revocation_reason"]) for s in listed["statements"]] == [(jti, "leaked")]


def test_revoke_cli(cli: Cli) -> None:
    out = json.loads(cli("mint", "desktop-agent", "--set", "software_version=1", "--json").stdout)
    sibling = cli("mint", "desktop-agent", "--set", "software_version=2").stdout.strip()
    token = out["software_statement"]
    assert cli("verify", token).exit_code == 0
    revoked = cli("revoke", out["jti"], "--reason", "malicious connector")
    assert revoked.exit_code == 0 and f"revoked statement {out['jti']}" in revoked.stdout
    twice = cli("revoke", out["digest"], "--reason", "again")
    assert twice.exit_code == 0 and "already revoked" in twice.stdout and "malicious connector" in twice.stdout
    assert_one_line_error(cli("verify", token), 1, "revoked by its issuer")
    assert cli("verify", token, "--no-status-check").exit_code == 0
    assert cli("verify", sibling).exit_code == 0
    listed = cli("audit", "list", "--revoked")
    assert out["jti"] in listed.stdout and "malicious connector" in listed.stdout
    assert sibling not in listed.stdout
    as_json = json.loads(cli("audit", "list", "--revoked", "--json").stdout)
    assert [r["revocation_reason"] for r in as_json] == ["malicious connector"]
    assert_one_line_error(cli("revoke", "nope", "--reason", "x"), 1, "no statement")
    assert_one_line_error(cli("revoke", out["jti"], "--reason", "x", "--suspend"), 1, "final")
    assert_one_line_error(cli("revoke", out["jti"]), 2, "Missing option '--reason'")
    assert_one_line_error(cli("revoke", out["jti"], "--reason", "  "), 2, "reason is required")


def test_status_query_names_a_revoked_signing_key(home: Path) -> None:
    """A statement whose own entry is VALID is still "revoked" when its key was."""
    clock = FixedClock(START)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    client = TestClient(create_app(auth, jwks_recheck=0))
    jti, token = mint(auth)
    kid = auth.keystore.active().kid
    auth.keys.revoke(kid, "compromised", actor="sec", channel="cli", force=True)
    answer = client.post("/v1/status", json={"software_statement": token}).json()
    assert answer["status"] == "revoked" and answer["jti"] == jti
    assert answer["reason"] == "signing key revoked (compromised)"
    auth.close()
