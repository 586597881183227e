"""issuer/core/metadata.py on its own: the RFC 7591 rules an attacker's claims meet, each with
the finding (claim, rule, level) a front prints. Written from `make mutants`: every test here
fails with a mutant that survived the template, mint and verifier tests."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.core import metadata
from issuer.core.metadata import Finding
from tests.core.test_templates import BASE_CLAIMS

# A complete, valid confidential web client.
BASE: dict[str, Any] = BASE_CLAIMS
ED25519_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"


def claims(*drop: str, **extra: Any) -> dict[str, Any]:
    out = {k: v for k, v in BASE.items() if k not in drop}
    out.update(extra)
    return out


def found(claims: dict[str, Any], **kwargs: Any) -> list[tuple[str, str, str]]:
    """(level, claim, rule) of every finding."""
    return [(f.level, f.claim, f.rule) for f in metadata.check_claims(claims, **kwargs)]


def test_the_base_client_is_clean() -> None:
    assert metadata.check_claims(BASE) == []
    assert metadata.check_claims(BASE, statement=True) == []


def test_an_empty_claim_name_is_refused() -> None:
    assert metadata.check_claims({**BASE, "": "x"}) == [
        Finding("error", "", "claim names must be non-empty strings", "RFC 7519 section 4")]


def test_claims_after_an_empty_name_are_still_checked() -> None:
    # Every finding at once: a publisher fixes a template in one pass, not one error a run.
    findings = metadata.check_claims({"": "x", **BASE, "client_name": 7})
    assert [(f.claim, f.level) for f in findings] == [("", "error"),
                                                      ("client_name", "error")]


def test_a_claim_name_that_is_not_a_string_is_refused_not_a_crash() -> None:
    # Only a Python caller can pass one (JSON and TOML names are strings).
    for claims in ({**BASE, 5: "x"}, {**BASE, ("a#b",): 1}):
        assert metadata.check_claims(claims) == [Finding(
            "error", str(next(k for k in claims if not isinstance(k, str))),
            "claim names must be non-empty strings", "RFC 7519 section 4")]


def test_changed_claims_are_checked_and_the_template_s_claims_are_not_again() -> None:
    # Mint time: the template's claims passed when it loaded; the mint-time values did not.
    minted = claims(scope="read  write", client_name="")
    assert found(minted, changed=["scope"]) == [
        ("error", "scope", "RFC 7591 section 2, RFC 6749 section 3.3")]
    assert found(minted, changed=["software_version"]) == []
    # nor are the rules across claims run again when no claim they read changed
    assert found(claims("redirect_uris"), changed=["client_name"]) == []
    assert found(claims("redirect_uris"), changed=["grant_types"]) == [
        ("error", "redirect_uris", "RFC 6749 section 3.1.2.2, RFC 9700 section 2.1")]


# --- jwks: a JWK Set of public keys, nothing else (RFC 7591 section 2, RFC 7517 section 5) -----

JWK_SET = "RFC 7591 section 2, RFC 7517 section 5"


@pytest.mark.parametrize("jwks", [
    "a string", ["a", "list"], [{"kty": "OKP", "crv": "Ed25519", "x": ED25519_X}], 7, None,
    {"keys": []}, {"keys": "OKP"}, {"keys": {"kty": "OKP"}}, {"kty": "OKP", "x": ED25519_X},
])
def test_jwks_that_is_not_a_jwk_set_is_refused_without_crashing(jwks: Any) -> None:
    assert metadata.check_claims(claims("jwks_uri", jwks=jwks), statement=True) == [
        Finding("error", "jwks", "must be a JWK Set object with a non-empty 'keys' array", JWK_SET)]


@pytest.mark.parametrize("key", ["OKP", ["OKP"], {"crv": "Ed25519", "x": ED25519_X},
                                 {"kty": 1, "x": ED25519_X}, {"kty": None}])
def test_a_jwk_without_a_kty_is_refused_without_crashing(key: Any) -> None:
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED25519_X}, key]}
    assert metadata.check_claims(claims("jwks_uri", jwks=jwks), statement=True) == [
        Finding("error", "jwks", "key 1 is not a JWK with a 'kty'", "RFC 7517 section 4.1")]


def test_a_symmetric_jwk_is_refused_as_a_shared_secret() -> None:
    jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}
    assert metadata.check_claims(claims("jwks_uri", jwks=jwks), statement=True) == [
        Finding("error", "jwks", "key 0 is a symmetric key, a shared secret", "RFC 7591 section 2")]


def test_private_jwk_members_are_refused_and_named() -> None:
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED25519_X},
                     {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "x", "p": "y", "qi": "z"}]}
    assert metadata.check_claims(claims("jwks_uri", jwks=jwks), statement=True) == [
        Finding("error", "jwks", "key 1 holds private key members (d, p, qi); jwks must hold "
                "public keys only", "RFC 7591 section 2, RFC 7518 section 6")]


# --- absolute URIs: extension grant types and aud (RFC 6749 section 4.5, RFC 7519 s4.1.3) -----

@pytest.mark.parametrize("grant", ["urn:example:grant type", "urn:example:grant\ttype",
                                   "1urn:example:grant", ":example", "urn_x:grant"])
def test_an_extension_grant_type_must_be_an_absolute_uri(grant: str) -> None:
    assert found(claims(grant_types=["authorization_code", grant])) == [
        ("error", "grant_types", "RFC 7591 section 2, RFC 6749 section 4.5")]


def test_an_extension_grant_type_uri_is_accepted() -> None:
    assert found(claims(grant_types=["authorization_code", "urn:example:grant-type:x"])) == []


@pytest.mark.parametrize("aud", ["https://as.example.com/ bad", "1as:x", ":x", ["ok", "a b:c"],
                                 "", [], ["ok", ""], 5, ["ok", 5]])
def test_aud_must_be_strings_and_uris_when_they_have_a_colon(aud: Any) -> None:
    assert found(claims(aud=aud)) == [("error", "aud", "RFC 7519 section 4.1.3")]


@pytest.mark.parametrize("aud", ["as-1", "https://as.example.com", ["as-1", "urn:x:y"]])
def test_aud_accepts_names_and_uris(aud: Any) -> None:
    assert found(claims(aud=aud)) == []


def test_a_bad_aud_finding_describes_the_value() -> None:
    assert metadata.check_claims(claims(aud=["as-1", 5])) == [
        Finding("error", "aud", "must be a non-empty string or array of strings (a URI when it "
                "contains ':'), got an array", "RFC 7519 section 4.1.3")]
    assert metadata.check_claims(claims(aud=5))[0].message.endswith("got a number (5)")


# --- grant types and response types agree (RFC 7591 section 2.1) ------------------------------

CODE_NEEDS_GRANT = "a 'code' response type needs the 'authorization_code' grant type"
TOKEN_NEEDS_GRANT = "a 'token' or 'id_token' response type needs the 'implicit' grant type"
GRANT_NEEDS_CODE = "the 'authorization_code' grant type needs the 'code' response type"
GRANT_NEEDS_TOKEN = "the 'implicit' grant type needs a 'token' response type"
DEFAULTED = (" (response_types defaults to [\"code\"] when omitted; set response_types = [] for "
             "a client without redirect flows)")


@pytest.mark.parametrize(("grants", "responses", "expected"), [
    (["client_credentials"], None, [("grant_types", CODE_NEEDS_GRANT + DEFAULTED)]),
    (["client_credentials"], ["code"], [("grant_types", CODE_NEEDS_GRANT)]),
    (["client_credentials"], [], []),
    (["authorization_code"], ["id_token"],
     [("grant_types", TOKEN_NEEDS_GRANT), ("response_types", GRANT_NEEDS_CODE)]),
    (["implicit"], ["code"],
     [("grant_types", CODE_NEEDS_GRANT), ("response_types", GRANT_NEEDS_TOKEN)]),
    (None, ["token"], [("grant_types", TOKEN_NEEDS_GRANT), ("response_types", GRANT_NEEDS_CODE)]),
    (["implicit"], ["id_token"], []),
    (["implicit"], ["token"], []),
    (["authorization_code", "implicit"], ["code id_token"], []),  # a hybrid response type
])
def test_grant_types_and_response_types_must_agree(
        grants: list[str] | None, responses: list[str] | None,
        expected: list[tuple[str, str]]) -> None:
    change = {k: v for k, v in (("grant_types", grants), ("response_types", responses))
              if v is not None}
    drop = [k for k in ("grant_types", "response_types") if k not in change]
    assert metadata.check_claims(claims(*drop, **change), statement=True) == [
        Finding("error", claim, message, "RFC 7591 section 2.1") for claim, message in expected]


@pytest.mark.parametrize(("pending", "change"), [
    ("grant_types", {"response_types": ["token"]}),
    ("response_types", {"grant_types": ["client_credentials"]}),
])
def test_grant_and_response_types_required_at_mint_time_are_not_judged_yet(
        pending: str, change: dict[str, Any]) -> None:
    assert metadata.check_claims(claims(pending, **change), pending=[pending],
                                 statement=True) == []


# --- redirect-based grants need redirect URIs; private-use schemes are for native apps ---------

def test_a_redirect_grant_without_redirect_uris_is_refused_with_its_code() -> None:
    assert metadata.check_claims(claims("redirect_uris"), statement=True) == [
        Finding("error", "redirect_uris", "the 'authorization_code' grant type needs registered "
                "redirect_uris", "RFC 6749 section 3.1.2.2, RFC 9700 section 2.1",
                "invalid_redirect_uri")]


def test_redirect_uris_required_at_mint_time_are_not_missing() -> None:
    assert metadata.check_claims(claims("redirect_uris"), pending=["redirect_uris"]) == []


PRIVATE_USE_WEB = Finding(
    "error", "redirect_uris", "'com.example.app:/cb' is a private-use scheme, which only a "
    "native app can receive (set application_type = \"native\")",
    "RFC 8252 section 7.1, OpenID Connect Registration 1.0 section 2", "invalid_redirect_uri")


@pytest.mark.parametrize("drop", [(), ("grant_types", "response_types")])
def test_a_private_use_redirect_uri_is_refused_for_a_web_client(drop: tuple[str, ...]) -> None:
    # With or without grant types: a base template naming no grant is checked too.
    assert metadata.check_claims(claims(*drop, redirect_uris=["com.example.app:/cb"]),
                                 statement=True) == [PRIVATE_USE_WEB]


def test_redirect_flows_wait_for_grant_types_required_at_mint_time() -> None:
    template = claims("grant_types", "response_types", redirect_uris=["com.example.app:/cb"])
    assert metadata.check_claims(template, pending=["grant_types", "response_types"]) == []
    minted = {**template, "grant_types": ["authorization_code"], "response_types": ["code"]}
    assert metadata.check_claims(minted, statement=True,
                                 changed=["grant_types", "response_types"]) == [PRIVATE_USE_WEB]


def test_a_redirect_uri_that_is_not_a_string_is_one_finding() -> None:
    assert metadata.check_claims(claims(redirect_uris=["https://app.example.com/cb", 5])) == [
        Finding("error", "redirect_uris", "must be an array of non-empty strings, got an array",
                "RFC 7591 section 2")]


# --- client authentication: key material, one certificate name, confidential grants --------

KEY_NEEDED = ("needs jwks_uri (or jwks) so the authorization server can verify the client's key",
              "RFC 7591 section 2, RFC 7523 section 2.2, RFC 8705 section 2.2")


@pytest.mark.parametrize("method", ["private_key_jwt", "self_signed_tls_client_auth"])
def test_a_key_based_method_without_keys_is_refused(method: str) -> None:
    message, rule = KEY_NEEDED
    assert metadata.check_claims(claims("jwks_uri", token_endpoint_auth_method=method),
                                 statement=True) == [
        Finding("error", "token_endpoint_auth_method", f"{method} {message}", rule)]


@pytest.mark.parametrize("pending", ["jwks", "jwks_uri"])
def test_keys_required_at_mint_time_count_as_keys(pending: str) -> None:
    assert metadata.check_claims(claims("jwks_uri"), pending=[pending]) == []


def test_jwks_and_jwks_uri_together_are_refused() -> None:
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED25519_X}]}
    assert metadata.check_claims(claims(jwks=jwks), statement=True) == [
        Finding("error", "jwks", "jwks and jwks_uri must not both be present",
                "RFC 7591 section 2")]


TLS_NAMES = ["tls_client_auth_subject_dn", "tls_client_auth_san_dns", "tls_client_auth_san_uri",
             "tls_client_auth_san_ip", "tls_client_auth_san_email"]


@pytest.mark.parametrize(("given", "pending", "refused"), [
    ([], [], True),
    (["tls_client_auth_subject_dn"], [], False),
    (["tls_client_auth_san_email"], [], False),
    ([], ["tls_client_auth_san_dns"], False),
    (["tls_client_auth_subject_dn", "tls_client_auth_san_dns"], [], True),
    (["tls_client_auth_subject_dn"], ["tls_client_auth_san_ip"], True),
])
def test_tls_client_auth_needs_exactly_one_certificate_name(
        given: list[str], pending: list[str], refused: bool) -> None:
    values = {name: "CN=app.example.com" for name in given}
    findings = metadata.check_claims(
        claims("jwks_uri", token_endpoint_auth_method="tls_client_auth", **values),
        pending=pending)
    assert findings == ([Finding("error", "token_endpoint_auth_method",
                                 "tls_client_auth needs exactly one of " + ", ".join(TLS_NAMES),
                                 "RFC 8705 section 2.1.2")] if refused else [])


def test_client_credentials_needs_an_authenticated_client() -> None:
    public = claims("jwks_uri", token_endpoint_auth_method="none",
                    grant_types=["client_credentials"], response_types=[])
    assert metadata.check_claims(public, statement=True) == [
        Finding("error", "grant_types", "client_credentials needs an authenticated (confidential) "
                "client, but token_endpoint_auth_method is 'none'", "RFC 6749 section 4.4")]
    assert metadata.check_claims({**public, "grant_types": ["refresh_token"]},
                                 statement=True) == []


# --- legal but risky: warnings, errors under --strict ------------------------------------------

@pytest.mark.parametrize(("change", "expected"), [
    ({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED25519_X}]}},
     Finding("warning", "jwks", "keys by value can't be rotated without a new statement; prefer "
             "jwks_uri", "RFC 7591 section 2")),
    ({"token_endpoint_auth_method": "client_secret_basic"},
     Finding("warning", "token_endpoint_auth_method", "client_secret_basic relies on a shared "
             "secret, which distributed software can't keep; prefer private_key_jwt",
             "RFC 7591 section 2, RFC 9700 section 2.5")),
    ({"grant_types": ["implicit"], "response_types": ["token"], "jwks_uri": BASE["jwks_uri"]},
     Finding("warning", "grant_types", "the implicit grant exposes access tokens in the front "
             "channel", "RFC 9700 section 2.1.2")),
    ({"redirect_uris": ["http://127.0.0.1:8080/cb"], "jwks_uri": BASE["jwks_uri"]},
     Finding("warning", "redirect_uris", "'http://127.0.0.1:8080/cb' is a loopback http redirect "
             "outside a native-app template (set application_type = \"native\")",
             "RFC 8252 section 7.3")),
])
def test_risky_choices_are_warnings_naming_their_rule(change: dict[str, Any],
                                                      expected: Finding) -> None:
    assert metadata.check_claims(claims("jwks_uri", **change)) == [expected]
    assert metadata.check_claims(claims("jwks_uri", **change), statement=True) == []


# --- language tags: only on human-readable fields, BCP 47 shaped (RFC 7591 section 2.2) -------

@pytest.mark.parametrize(("name", "message"), [
    ("scope#de", "language tags are only allowed on human-readable fields (client_name, "
                 "client_uri, logo_uri, policy_uri, tos_uri)"),
    # the tag is everything after the first '#'
    ("client_name#en#US", "'en#US' is not a BCP 47 language tag"),
    ("client_name#en_US", "'en_US' is not a BCP 47 language tag"),
])
def test_language_tags_that_are_refused(name: str, message: str) -> None:
    assert metadata.check_claims(claims(**{name: "read"})) == [
        Finding("error", name, message, "RFC 7591 section 2.2")]


def test_a_language_tagged_name_is_accepted() -> None:
    assert metadata.check_claims(claims(**{"client_name#ja-Jpan-JP": "x"})) == []


# --- near misses: a typo that would leave the real claim unset (a warning; --strict refuses) --

@pytest.mark.parametrize(("name", "meant"), [
    ("redirect_uri", "redirect_uris"),  # deletion
    ("client_namee", "client_name"),  # insertion
    ("clinet_name", "client_name"),  # adjacent transposition
    ("contacst", "contacts"),  # transposition at the end
    ("scopx", "scope"),  # substitution
    ("client_nmae#de", "client_name"),  # on the base of a language-tagged name
])
def test_a_claim_one_typo_from_a_registered_one_is_a_warning(name: str, meant: str) -> None:
    assert metadata.check_claims(claims(**{name: "x"})) == [
        Finding("warning", name, f"is not a registered claim; did you mean '{meant}'?",
                "RFC 7591 section 2")]


@pytest.mark.parametrize("name", [
    "xontaxts",  # two substitutions, apart
    "xoncacts",  # two substitutions, apart, one letter moved
    "coxyacts",  # two adjacent substitutions that are not a swap
    "redirect_u", "client_nameee", "contacts_extra", "org_id", "software_roles",
])
def test_a_claim_two_edits_away_is_an_extension_not_a_typo(name: str) -> None:
    assert metadata.check_claims(claims(**{name: "x"})) == []


# --- Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document) ----------

CLIENT_ID = "https://agent.example.com/oauth/client.json"
DOC_RULE = "draft-ietf-oauth-client-id-metadata-document section 4.1"


def document(**change: Any) -> dict[str, Any]:
    return {"client_id": CLIENT_ID, "redirect_uris": ["https://agent.example.com/cb"],
            "token_endpoint_auth_method": "none", **change}


@pytest.mark.parametrize(("change", "expected"), [
    ({"client_id": CLIENT_ID + "x"},
     Finding("error", "client_id", f"'{CLIENT_ID}x' is not the document's URL '{CLIENT_ID}'",
             f"{DOC_RULE}, RFC 3986 section 6.2.1")),
    ({"token_endpoint_auth_method": "client_secret_post"},
     Finding("error", "token_endpoint_auth_method", "client_secret_post relies on a shared "
             "secret, which a published document can't establish; use private_key_jwt or none",
             DOC_RULE)),
    ({"client_secret_expires_at": 0},
     Finding("error", "client_secret_expires_at", "must not appear in a client metadata document",
             DOC_RULE)),
    ({"software_statement": ""},
     Finding("error", "software_statement", "must be a compact JWS string",
             "RFC 7591 section 2.3")),
])
def test_document_findings_name_the_rule(change: dict[str, Any], expected: Finding) -> None:
    assert metadata.check_document(document(**change), CLIENT_ID) == [expected]


def test_a_document_without_client_id_is_refused() -> None:
    doc = document()
    del doc["client_id"]
    assert metadata.check_document(doc, CLIENT_ID) == [
        Finding("error", "client_id", f"None is not the document's URL '{CLIENT_ID}'",
                f"{DOC_RULE}, RFC 3986 section 6.2.1")]


@pytest.mark.parametrize(("url", "problem"), [
    (None, "must be a non-empty string"),
    ("https://agent.example.com/c\x00.json", "contains whitespace or control characters"),
    ("ftp://agent.example.com/c.json", "must use the https scheme"),
    ("https://:pw@agent.example.com/c.json", "must not contain a username or password"),
    ("https://@agent.example.com/c.json", "must not contain a username or password"),
    ("https://user@agent.example.com/c.json", "must not contain a username or password"),
    ("https://agent.example.com/c.json#", "must not contain a fragment"),
    ("https://agent.example.com?x=/a", "must contain a path component"),
    ("https://agent.example.com/a/..", "must not contain single-dot or double-dot path segments"),
])
def test_client_id_url_problems_are_named(url: Any, problem: str) -> None:
    assert metadata.client_id_url_problem(url) == problem


# --- single-claim rules whose findings a registering client sees (RFC 7591 section 3.2.2) ----

@pytest.mark.parametrize(("claim", "value", "expected"), [
    ("dpop_bound_access_tokens", "yes",
     Finding("error", "dpop_bound_access_tokens", "must be a boolean, got a string ('yes')",
             "RFC 7591 section 2")),
    ("application_type", 5,
     Finding("error", "application_type", "must be a non-empty string, got a number (5)",
             "RFC 7591 section 2")),
    ("application_type", "desktop",
     Finding("error", "application_type", "'desktop' is neither 'web' nor 'native'",
             "OpenID Connect Registration 1.0 section 2")),
    ("token_endpoint_auth_signing_alg", 5,
     Finding("error", "token_endpoint_auth_signing_alg",
             "must be a non-empty string, got a number (5)", "RFC 7591 section 2")),
    ("token_endpoint_auth_signing_alg", "none",
     Finding("error", "token_endpoint_auth_signing_alg", "'none' is not a signing algorithm",
             "RFC 7518 section 3.6")),
    ("jwks_uri", "http://app.example.com/jwks.json",
     Finding("error", "jwks_uri", "'http://app.example.com/jwks.json' must use https",
             "RFC 7591 section 2, RFC 7517 section 9.3")),
    ("token_endpoint_auth_method", 5,
     Finding("error", "token_endpoint_auth_method", "must be a non-empty string, got a number (5)",
             "RFC 7591 section 2")),
    ("token_endpoint_auth_method", "client_secret",
     Finding("error", "token_endpoint_auth_method", "'client_secret' is not a registered method "
             "(one of client_secret_basic, client_secret_jwt, client_secret_post, none, "
             "private_key_jwt, self_signed_tls_client_auth, tls_client_auth)",
             "RFC 7591 section 2, IANA OAuth Token Endpoint Authentication Methods")),
    ("grant_types", ["authorization_code", "password"],
     Finding("error", "grant_types", "the resource owner password credentials grant must not be "
             "used: it exposes the user's credentials to the client", "RFC 9700 section 2.4")),
    ("grant_types", ["authorization_code", "jwt-bearer"],
     Finding("error", "grant_types", "'jwt-bearer' is not a known grant type (extension grant "
             "types are absolute URIs)", "RFC 7591 section 2, RFC 6749 section 4.5")),
    ("response_types", ["code", "code x_custom"],
     Finding("warning", "response_types", "'code x_custom' is an extension response type; "
             "authorization servers that don't support it will refuse the client",
             "RFC 6749 section 8.4")),
    ("response_types", "code",
     Finding("error", "response_types", "must be an array of non-empty strings, got a string "
             "('code')", "RFC 7591 section 2")),
    ("response_types", ["code "],  # names are separated by single spaces (RFC 6749 s3.1.1)
     Finding("error", "response_types", "'code ' is not a response type (space-separated names "
             "such as code, token, id_token, or none)",
             "RFC 7591 section 2, RFC 6749 section 3.1.1")),
    ("scope", 5,
     Finding("error", "scope", "must be a non-empty string, got a number (5)",
             "RFC 7591 section 2")),
    ("scope", "read  write",
     Finding("error", "scope", "'read  write' is not a list of scope tokens separated by single "
             "spaces", "RFC 7591 section 2, RFC 6749 section 3.3")),
])
def test_a_bad_value_is_one_finding(claim: str, value: Any, expected: Finding) -> None:
    assert metadata.check_claims(claims(**{claim: value}), statement=True) == [expected]
    assert expected.code == "invalid_client_metadata"


@pytest.mark.parametrize(("claim", "value"), [
    ("application_type", "web"), ("application_type", "native"),
    ("token_endpoint_auth_signing_alg", "EdDSA"), ("dpop_bound_access_tokens", False),
])
def test_good_values_pass(claim: str, value: Any) -> None:
    extra = {"redirect_uris": ["http://127.0.0.1/cb"]} if value == "native" else {}
    assert metadata.check_claims(claims(**{claim: value, **extra}), statement=True) == []


def test_response_type_none_is_a_client_without_redirect_flows() -> None:
    # "none" (OAuth 2.0 Multiple Response Types section 4) is a response type of its own, not an
    # extension name: no warning.
    assert metadata.check_claims(claims(grant_types=["client_credentials"],
                                        response_types=["none"])) == []


def test_a_refused_redirect_uri_is_named_in_its_finding() -> None:
    assert metadata.check_claims(claims(redirect_uris=["https://app.example.com/cb",
                                                       "http://app.example.com/cb"])) == [
        Finding("error", "redirect_uris", "'http://app.example.com/cb' uses http on a "
                "non-loopback host; use https", "RFC 8252 section 8.3", "invalid_redirect_uri")]


def test_redirect_findings_carry_the_invalid_redirect_uri_code() -> None:
    (finding,) = metadata.check_claims(claims(redirect_uris=["https://*.example.com/cb"]))
    assert finding.code == "invalid_redirect_uri"
    (finding,) = metadata.check_claims(claims(client_name=""))
    assert finding.code == "invalid_client_metadata"


def test_long_values_are_shortened_in_messages() -> None:
    fits = "https://example.com/" + "a" * 38  # repr: 60 characters
    assert len(repr(fits)) == 60
    assert metadata.check_claims(claims(jwks_uri=fits.replace("https", "http")))[0].message == \
        f"{fits.replace('https', 'http')!r} must use https"
    long = fits.replace("https", "http") + "b"  # repr: 60 characters, in http
    assert metadata.check_claims(claims(jwks_uri=long))[0].message == \
        f"{long!r} must use https"
    longer = long + "c"  # repr: 61 characters
    assert metadata.check_claims(claims(jwks_uri=longer))[0].message == \
        f"{repr(longer)[:57]}... must use https"


# --- redirect URIs (RFC 6749 section 3.1.2, RFC 8252, RFC 9700) and web URLs (RFC 7591 s2) ---

@pytest.mark.parametrize(("uri", "rule"), [
    ("https:///cb", "RFC 6749 section 3.1.2"),  # no host
    ("HTTPS:///cb", "RFC 6749 section 3.1.2"),
    ("blob:https://app.example.com/x", "RFC 9700 section 4.1, RFC 6749 section 10.6"),
    ("About:blank", "RFC 9700 section 4.1, RFC 6749 section 10.6"),
    ("HTTP://app.example.com/cb", "RFC 8252 section 8.3"),
    ("http://LOCALHOST:8080/cb", "RFC 8252 section 8.3"),
    ("http:///cb", "RFC 8252 section 8.3"),
    ("https://@app.example.com/cb", "RFC 9700 section 4.1.1"),
    ("https://u:p@app.example.com/cb", "RFC 9700 section 4.1.1"),
    ("https://*.example.com/cb", "RFC 9700 section 2.1"),
    ("https://app.example.com/cb#done", "RFC 6749 section 3.1.2"),
    ("com.example.app:///cb", "RFC 8252 section 7.1"),  # empty authority, still an authority
    ("com.example.app://cb", "RFC 8252 section 7.1"),
    ("com.example.app://", "RFC 8252 section 7.1"),
    ("com.example.app://?x=1", "RFC 8252 section 7.1"),
    ("1com.example.app:/cb", "RFC 6749 section 3.1.2"),
    ("https://app.example.com/cb\x7f", "RFC 3986 section 3"),
])
def test_redirect_uris_that_are_refused(uri: str, rule: str) -> None:
    findings = metadata.check_claims(claims(redirect_uris=[uri], application_type="native"))
    assert [(f.level, f.claim, f.rule, f.code) for f in findings] == [
        ("error", "redirect_uris", rule, "invalid_redirect_uri")]


@pytest.mark.parametrize(("uri", "message"), [
    ("https://app.example.com/c b", "contains whitespace or control characters"),
    ("https://*.example.com/cb", "contains a wildcard; redirect URIs are matched exactly"),
    ("//app.example.com/cb", "is not an absolute URI"),
    ("https://app.example.com/cb#x", "must not have a fragment"),
    ("https://u@app.example.com/cb", "must not carry userinfo"),
    ("javascript:alert(1)", "uses the 'javascript' scheme, which a browser runs or reads locally "
                            "instead of navigating: never a redirect URI"),
    ("https:///cb", "has no host"),
    ("http://localhost/cb", "uses 'localhost', which can resolve off the loopback interface; use "
                            "the loopback IP literal 127.0.0.1 or [::1]"),
    ("http://app.example.com/cb", "uses http on a non-loopback host; use https"),
    ("com.example.app://cb", "names an authority after a private-use scheme; use a single slash "
                             "(com.example.app:/path)"),
    ("myapp:/cb", "uses a scheme that is neither https, http on a loopback address, nor a "
                  "private-use reverse-domain scheme like com.example.app"),
])
def test_a_refused_redirect_uri_s_finding_says_why(uri: str, message: str) -> None:
    (finding,) = metadata.check_claims(claims(redirect_uris=[uri], application_type="native"))
    assert finding.message == f"{uri!r} {message}"


@pytest.mark.parametrize("uri", ["HTTPS://app.example.com/cb", "HTTP://127.0.0.1:8080/cb",
                                 "http://127.0.0.2/cb", "http://[::1]:80/cb",
                                 "com.example.app:/cb", "com.example.app:cb",
                                 "Com.Example.App:/cb"])  # schemes are case-insensitive
def test_redirect_uris_that_are_accepted(uri: str) -> None:
    assert metadata.check_claims(claims(redirect_uris=[uri], application_type="native")) == []


@pytest.mark.parametrize(("value", "message", "rule"), [
    ("https://u@app.example.com/", "must not carry userinfo", "RFC 3986 section 3.2.1"),
    ("https://@app.example.com/", "must not carry userinfo", "RFC 3986 section 3.2.1"),
    ("ftp://app.example.com/", "must use http or https", "RFC 7591 section 2"),
    ("https:///about", "has no host", "RFC 7591 section 2"),
    ("//app.example.com/about", "is not an absolute URI", "RFC 7591 section 2"),
    ("https://app.example.com/a b", "is not an absolute URI", "RFC 7591 section 2"),
])
def test_web_page_urls_that_are_refused(value: str, message: str, rule: str) -> None:
    assert metadata.check_claims(claims(client_uri=value)) == [
        Finding("error", "client_uri", f"{value!r} {message}", rule)]


@pytest.mark.parametrize("value", ["http://app.example.com/", "HTTPS://app.example.com/about"])
def test_web_page_urls_may_use_http(value: str) -> None:
    assert metadata.check_claims(claims(client_uri=value)) == []
    assert [f.message for f in metadata.check_claims(claims(jwks_uri=value))] == (
        [] if value.lower().startswith("https") else [f"{value!r} must use https"])
