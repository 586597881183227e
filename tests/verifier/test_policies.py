"""``aud`` (RFC 7519 section 4.1.3), registration policies that fail closed, RFC 8252 section
7.3 loopback ports: at the library, `Registrar` and `issuer verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url_decode
from issuer.core.errors import InvalidClientMetadata, InvalidRedirectURI, InvalidSoftwareStatement
from issuer.core.statements import MintRequest, encode_payload
from issuer.core.templates import TemplateStore
from issuer.verifier import Registrar, RegistrationPolicy, StatementVerifier, TrustedIssuer, verify
from issuer.verifier.registration import redirect_matches
from tests.conftest import START, Cli, assert_one_line_error
from tests.core.test_templates import BASE_CLAIMS, template_text

ISS = "https://issuer.example.com"
AS = "https://as.example.com"


def signed(auth: Authority, **changes: Any) -> str:
    """A real statement of the issuer, its claims changed (``None`` removes one)."""
    token = auth.mint(MintRequest("mcp-connector", {"software_version": "1"}), principal="ci",
                      channel="cli").software_statement
    claims = json.loads(b64url_decode(token.split(".")[1]))
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return auth.keystore.signer().sign(encode_payload(claims))


def registrar(auth: Authority, policy: RegistrationPolicy, audience: str | None = None) -> Registrar:
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks(),
                                                        check_status=False)],
                                 clock=FixedClock(START), audience=audience)
    return Registrar(verifier, policy)


# --- aud -------------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", [AS, [AS], ["https://other.example", AS]])
def test_a_statement_for_this_server_verifies_here(auth: Authority, aud: Any) -> None:
    token = signed(auth, aud=aud)
    assert verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock, audience=AS)
    assert registrar(auth, RegistrationPolicy(), audience=AS).register(
        {"software_statement": token}).metadata["client_name"]


@pytest.mark.parametrize(("aud", "audience", "text"), [
    (AS, None, "no audience configured"),
    ([AS], None, "no audience configured"),
    ("https://other.example", AS, "does not name this server"),
    ([], AS, "does not name this server"),
    (5, AS, "neither a string nor an array"),
])
def test_a_statement_for_someone_else_is_refused(auth: Authority, aud: Any,
                                                 audience: str | None, text: str) -> None:
    token = signed(auth, aud=aud)
    with pytest.raises(InvalidSoftwareStatement, match=text):
        verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock, audience=audience)
    with pytest.raises(InvalidSoftwareStatement, match=text):
        registrar(auth, RegistrationPolicy(), audience=audience).register(
            {"software_statement": token})


def test_issuer_verify_audience(cli: Cli, auth: Authority) -> None:
    token = signed(auth, aud=AS)
    assert_one_line_error(cli("verify", token, "--no-status-check"), 1, "aud")
    assert cli("verify", token, "--no-status-check", "--audience", AS).exit_code == 0


def test_templates_may_set_a_well_formed_aud(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    good = tmp_path / "templates" / "good.toml"
    good.write_text(template_text({**BASE_CLAIMS, "aud": [AS]}))
    assert TemplateStore(tmp_path / "templates", 86400 * 400).load("good").claims["aud"] == [AS]
    for bad in (5, [], [""], "not a uri:"):
        (tmp_path / "templates" / "bad.toml").write_text(
            template_text({**BASE_CLAIMS, "aud": bad}))
        with pytest.raises(Exception, match="claim 'aud'.*RFC 7519 section 4.1.3"):
            TemplateStore(tmp_path / "templates", 86400 * 400).load("bad")


# --- policies fail closed ---------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "missing", "request_", "error"), [
    (RegistrationPolicy(redirect_uris_subset=True), "redirect_uris",
     {"redirect_uris": ["https://evil.example/cb"]}, InvalidRedirectURI),
    (RegistrationPolicy(scope_subset=True), "scope", {"scope": "admin"}, InvalidClientMetadata),
    (RegistrationPolicy(jwks_uri_must_match=True), "jwks_uri",
     {"jwks_uri": "https://evil.example/jwks.json"}, InvalidClientMetadata),
])
def test_policies_refuse_when_the_statement_lacks_the_claim(
        auth: Authority, policy: RegistrationPolicy, missing: str, request_: dict[str, Any],
        error: type) -> None:
    changes: dict[str, Any] = {missing: None}
    if missing == "redirect_uris":  # a client without redirect flows
        changes.update(grant_types=["client_credentials"], response_types=[])
    if missing == "jwks_uri":
        changes["jwks"] = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}]}
    token = signed(auth, **changes)
    with pytest.raises(error, match="names no"):
        registrar(auth, policy).register({"software_statement": token, **request_})
    # The same request without the compared claim registers with the statement's values.
    assert registrar(auth, policy).register({"software_statement": token})


# --- RFC 8252 section 7.3: any port on a loopback redirect ------------------------------------


@pytest.mark.parametrize(("requested", "allowed", "ok"), [
    ("http://127.0.0.1:53123/callback", "http://127.0.0.1/callback", True),
    ("http://127.0.0.1/callback", "http://127.0.0.1/callback", True),
    ("http://127.0.0.1:1/callback", "http://127.0.0.1:2/callback", True),
    ("http://[::1]:8080/cb", "http://[::1]/cb", True),
    ("http://127.0.0.1:53123/other", "http://127.0.0.1/callback", False),
    ("http://127.0.0.1:53123/callback?x=1", "http://127.0.0.1/callback", False),
    ("http://[::1]:53123/callback", "http://127.0.0.1/callback", False),
    ("http://localhost:53123/callback", "http://localhost/callback", False),
    ("https://app.example:8443/cb", "https://app.example/cb", False),
    ("http://127.0.0.1:x/callback", "http://127.0.0.1/callback", False),
])
def test_loopback_redirects_match_on_any_port(requested: str, allowed: str, ok: bool) -> None:
    assert redirect_matches(requested, allowed) is ok


def test_a_desktop_connector_registers_its_run_time_port(auth: Authority) -> None:
    token = signed(auth, redirect_uris=["http://127.0.0.1/callback"], application_type="native")
    reg = registrar(auth, RegistrationPolicy(redirect_uris_subset=True))
    registration = reg.register({"software_statement": token,
                                 "redirect_uris": ["http://127.0.0.1:53123/callback"]})
    # The statement wins (RFC 7591 section 3.1.1); the AS matches the port at authorization.
    assert registration.metadata["redirect_uris"] == ["http://127.0.0.1/callback"]
    with pytest.raises(InvalidRedirectURI, match="not in the software statement"):
        reg.register({"software_statement": token,
                      "redirect_uris": ["http://127.0.0.1:53123/elsewhere"]})


# --- RFC 7591 section 3.1.1: the statement wins for every claim --------------------------------


def test_tagged_variants_of_a_stated_claim_are_dropped(auth: Authority) -> None:
    token = signed(auth, logo_uri=None)  # sets client_name and client_name#de, no logo_uri
    md = registrar(auth, RegistrationPolicy()).register({
        "software_statement": token, "client_name#fr": "Faux", "client_name#de": "Falsch",
        "logo_uri#fr": "https://client.example/fr.png"}).metadata
    assert "client_name#fr" not in md
    assert md["client_name#de"] == "Example Kalender-Connector"
    assert md["logo_uri#fr"] == "https://client.example/fr.png"  # the statement sets no logo_uri
    assert md["dpop_bound_access_tokens"] is True
    assert md["token_endpoint_auth_signing_alg"] == "ES256"


# --- the metadata rules hold at the verifier as at the issuer ----------------------------------


def test_metadata_rules_at_the_verifier(auth: Authority) -> None:
    extension = signed(auth, response_types=["code", "code magic"])  # RFC 6749 section 8.4
    assert verify(extension, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    for changes, text in (({"grant_types": ["authorization_code", "password"]}, "RFC 9700"),
                          ({"redirect_uris": None}, "needs registered redirect_uris"),
                          ({"redirect_uris": ["javascript:alert(1)"]}, "never a redirect URI")):
        with pytest.raises(InvalidSoftwareStatement, match=text):
            verify(signed(auth, **changes), jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
