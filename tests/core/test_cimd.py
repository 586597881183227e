"""Client ID Metadata Documents on the issuing side: the draft's rules, the template flag,
`issuer cimd export`, and the hosted documents' renewal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from issuer.core import metadata
from issuer.core.authority import Authority
from issuer.core.cimd import (
    CHANNEL,
    DOCUMENT_BUDGET,
    HOSTED_PRINCIPAL,
    HostedDocuments,
    export_document,
    size_bound,
)
from issuer.core.clock import FixedClock
from issuer.core.errors import InvalidClientMetadata, NotFound, TemplateError
from tests.conftest import START, Cli, assert_one_line_error, write_template

CLIENT_ID = "https://agent.example.com/oauth/client.json"

HOSTED = """
description = "A hosted MCP client"
lifetime = "10d"
cimd = true
[claims]
software_id = "4f1c"
client_name = "Hosted Agent"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code"]
response_types = ["code"]
redirect_uris = ["https://agent.example.com/callback"]
"""


@pytest.mark.parametrize(("url", "problem"), [
    ("http://agent.example.com/c.json", "https"),
    ("https://agent.example.com", "path"),
    ("https://agent.example.com/", "path"),
    ("https://agent.example.com/a/../c.json", "double-dot"),
    ("https://agent.example.com/./c.json", "single-dot"),
    ("https://agent.example.com/c.json#x", "fragment"),
    ("https://user:pw@agent.example.com/c.json", "username or password"),
    ("https://agent.example.com/c json", "whitespace"),
    ("", "non-empty"),
])
def test_client_id_url_rules(url: str, problem: str) -> None:
    found = metadata.client_id_url_problem(url)
    assert found is not None and problem in found


def test_a_good_client_id_url_and_document_pass() -> None:
    assert metadata.client_id_url_problem("https://agent.example.com:8443/c.json?v=1") is None
    document = {"client_id": CLIENT_ID, "redirect_uris": ["https://agent.example.com/cb"],
                "token_endpoint_auth_method": "none", "software_statement": "a.b.c"}
    assert metadata.errors(metadata.check_document(document, CLIENT_ID)) == []


@pytest.mark.parametrize(("change", "claim"), [
    ({"client_id": CLIENT_ID + "x"}, "client_id"),
    ({"client_id": CLIENT_ID.upper()}, "client_id"),  # simple string comparison, no normalising
    ({"token_endpoint_auth_method": "client_secret_basic"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "client_secret_post"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "client_secret_jwt"}, "token_endpoint_auth_method"),
    ({"client_secret": "s3cret"}, "client_secret"),
    ({"client_secret_expires_at": 0}, "client_secret_expires_at"),
    ({"software_statement": 7}, "software_statement"),
    ({"redirect_uris": ["https://*.example.com/cb"]}, "redirect_uris"),
])
def test_document_rules(change: dict[str, Any], claim: str) -> None:
    document = {"client_id": CLIENT_ID, "redirect_uris": ["https://agent.example.com/cb"],
                "token_endpoint_auth_method": "none", **change}
    found = metadata.errors(metadata.check_document(document, CLIENT_ID))
    assert [f.claim for f in found] == [claim]


def test_template_cimd_flag_rules(home: Path, auth: Authority) -> None:
    write_template(home, "hosted", HOSTED)
    template = auth.templates.load("hosted")
    assert template.cimd and template.content()["cimd"] is True
    # Templates that never host a document keep the digest they always had.
    assert "cimd" not in auth.templates.load("desktop-agent").content()
    write_template(home, "secret", HOSTED.replace('"none"', '"client_secret_basic"'))
    with pytest.raises(TemplateError, match="shared secret"):
        auth.templates.load("secret")
    write_template(home, "notbool", HOSTED.replace("cimd = true", 'cimd = "yes"'))
    with pytest.raises(TemplateError, match="key 'cimd': must be true or false"):
        auth.templates.load("notbool")
    write_template(home, "needs", HOSTED.replace("cimd = true", 'cimd = true\nrequired = '
                                                 '["software_version"]'))
    with pytest.raises(TemplateError, match="minted without mint-time values"):
        auth.templates.load("needs")
    # The flag passes down an extends chain like every other key.
    write_template(home, "child", 'extends = "hosted"\n[claims]\nclient_name = "Child"\n')
    assert auth.templates.load("child").cimd


def count(auth: Authority) -> int:
    return len(auth.audit.statements())


def test_export_a_document_that_verifies(cli: Cli, home: Path, tmp_path: Path) -> None:
    result = cli("cimd", "export", "desktop-agent", "--client-id", CLIENT_ID,
                 "--set", "software_version=2.0")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["client_id"] == CLIENT_ID
    assert document["software_version"] == "2.0"
    assert document["token_endpoint_auth_method"] == "none"
    assert len(result.stdout.encode()) < DOCUMENT_BUDGET < metadata.CIMD_MAX_BYTES
    jwks = json.loads(cli("jwks").stdout)
    header = jwt.get_unverified_header(document["software_statement"])
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    claims = jwt.decode(document["software_statement"], key, algorithms=["ES256"])
    # The document and its statement agree on every piece of client metadata.
    for name, value in claims.items():
        if name not in ("iss", "iat", "exp", "jti", "status"):
            assert document[name] == value, name
    auth = Authority.from_config(home / "issuer.toml", env={})
    record = auth.audit.statement(claims["jti"])
    assert record.channel == CHANNEL and record.template == "desktop-agent"
    auth.close()
    out = tmp_path / "client.json"
    written = cli("cimd", "export", "desktop-agent", "--client-id", CLIENT_ID,
                  "--set", "software_version=2.1", "--out", str(out))
    assert written.exit_code == 0 and json.loads(out.read_text())["client_id"] == CLIENT_ID


def test_export_refuses_before_minting(cli: Cli, home: Path, auth: Authority) -> None:
    before = count(auth)
    assert_one_line_error(cli("cimd", "export", "desktop-agent", "--client-id",
                              "http://agent.example.com/c.json", "--set",
                              "software_version=1"), 1, "must use the https scheme")
    assert_one_line_error(cli("cimd", "export", "desktop-agent", "--client-id",
                              "https://agent.example.com"), 1, "must contain a path")
    write_template(home, "secret", HOSTED.replace('"none"', '"client_secret_basic"')
                   .replace("cimd = true\n", ""))
    assert_one_line_error(cli("cimd", "export", "secret", "--client-id", CLIENT_ID), 1,
                          "token_endpoint_auth_method", "shared secret")
    big = HOSTED.replace('client_name = "Hosted Agent"',
                         f'client_name = "{"A" * 2500}"').replace("cimd = true\n", "")
    write_template(home, "big", big)
    assert_one_line_error(cli("cimd", "export", "big", "--client-id", CLIENT_ID), 1,
                          "budget", "5120")
    assert_one_line_error(cli("cimd", "export", "desktop-agent", "--client-id", CLIENT_ID), 1,
                          "required claim(s) missing: software_version")
    assert count(auth) == before  # not one statement recorded for a refused document


@pytest.mark.parametrize("generate", [(), ("--alg", "PS256", "--rsa-bits", "4096")])
def test_the_size_bound_holds_for_real_signatures(cli: Cli, home: Path,
                                                  generate: tuple[str, ...]) -> None:
    if generate:
        assert cli("keys", "generate", *generate, "--activate").exit_code == 0
    auth = Authority.from_config(home / "issuer.toml", env={})
    values = {"software_version": "1.0.0-rc.1+build.20261127"}
    body = export_document(auth, "mcp-connector", CLIENT_ID, values, principal="t")
    claims = {**auth.templates.load("mcp-connector").claims, **values}
    assert len(body) <= size_bound(CLIENT_ID, claims, auth.config.issuer)
    auth.close()


def hosted_setup(home: Path, clock: FixedClock) -> tuple[Authority, HostedDocuments]:
    write_template(home, "hosted", HOSTED)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    return auth, HostedDocuments(auth)


def renewals(auth: Authority) -> list[str]:
    return [e.data["reason"] for e in auth.audit.events(type_prefix="cimd.renewed")]


def test_hosted_document_is_renewed_and_recorded(home: Path, clock: FixedClock) -> None:
    auth, hosted = hosted_setup(home, clock)
    body, max_age = hosted.document("hosted")
    document = json.loads(body)
    assert document["client_id"] == "https://issuer.example.com/clients/hosted"
    statement = auth.verify(document["software_statement"])
    assert statement.claims["client_name"] == "Hosted Agent"
    remaining = statement.claims["exp"] - START
    assert 0 < max_age <= remaining // 10  # well below the statement's remaining life
    record = auth.audit.statement(statement.claims["jti"])
    assert (record.channel, record.principal) == (CHANNEL, HOSTED_PRINCIPAL)
    # Served again: the same document, nothing minted.
    assert hosted.document("hosted")[0] == body
    clock.advance(4 * 86400)
    assert hosted.document("hosted")[0] == body
    # Past half its life: renewed before it expires.
    clock.advance(2 * 86400)
    renewed, _ = hosted.document("hosted")
    assert renewed != body
    # A template change renews at once.
    write_template(home, "hosted", HOSTED.replace("Hosted Agent", "Hosted Agent 2"))
    changed = json.loads(hosted.document("hosted")[0])
    assert changed["client_name"] == "Hosted Agent 2"
    assert auth.verify(changed["software_statement"]).claims["client_name"] == "Hosted Agent 2"
    # A revoked statement is replaced by a new one.
    jti = auth.verify(changed["software_statement"]).claims["jti"]
    auth.set_status(jti, "revoked", "key ceremony", actor="t", channel="cli")
    after = json.loads(hosted.document("hosted")[0])
    assert after["software_statement"] != changed["software_statement"]
    assert renewals(auth) == ["first", "expiring", "template changed", "revoked"]
    auth.close()


def test_hosted_document_survives_a_restart(home: Path, clock: FixedClock) -> None:
    auth, hosted = hosted_setup(home, clock)
    body, _ = hosted.document("hosted")
    auth.close()
    clock.advance(3600)
    again, hosted = hosted_setup(home, clock)
    assert hosted.document("hosted")[0] == body
    assert renewals(again) == ["first"]
    again.close()


def test_hosted_refuses_templates_without_the_flag(home: Path, clock: FixedClock) -> None:
    auth, hosted = hosted_setup(home, clock)
    with pytest.raises(NotFound, match="cimd = true"):
        hosted.document("desktop-agent")
    with pytest.raises(NotFound):
        hosted.document("../etc")
    write_template(home, "hosted", HOSTED.replace('client_name = "Hosted Agent"',
                                                  f'client_name = "{"A" * 4000}"'))
    with pytest.raises(InvalidClientMetadata, match="budget"):
        hosted.document("hosted")
    assert count(auth) == 0
    auth.close()


def test_verify_client_id_usage_errors(cli: Cli) -> None:
    assert_one_line_error(cli("verify", "a.b.c", "--reject-disagreement"), 2,
                          "go with --client-id")
    assert_one_line_error(cli("verify", "a.b.c", "--client-id", CLIENT_ID), 2,
                          "either TOKEN or --client-id")
    assert_one_line_error(cli("verify", "--client-id", "https://agent.example.com"), 1,
                          "must contain a path component")
    assert_one_line_error(cli("verify", "--client-id", "http://127.0.0.1:9/c.json"), 1,
                          "must use the https scheme")
