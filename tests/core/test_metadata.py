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
    ("com.example.app:///cb", "RFC 8252 section 7.1"),  # empty authority, still an authority
    ("com.example.app://cb", "RFC 8252 section 7.1"),
    ("1com.example.app:/cb", "RFC 6749 section 3.1.2"),
    ("https://app.example.com/cb\x7f", "RFC 3986 section 3"),
])
def test_redirect_uris_that_are_refused(uri: str, rule: str) -> None:
    findings = metadata.check_claims(claims(redirect_uris=[uri], application_type="native"))
    assert [(f.level, f.claim, f.rule, f.code) for f in findings] == [
        ("error", "redirect_uris", rule, "invalid_redirect_uri")]


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
