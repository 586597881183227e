"""Registration with software statements: precedence, policies, audit fields."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import (
    InvalidClientMetadata,
    InvalidRedirectURI,
    InvalidSoftwareStatement,
    IssuerError,
)
from issuer.core.statements import MintRequest
from issuer.verifier.registration import MemoryReplayCache, Registrar, RegistrationPolicy
from issuer.verifier.trust import StatementVerifier, TrustedIssuer
from tests.conftest import START

ISS = "https://issuer.example.com"


def registrar(auth: Authority, clock: FixedClock, policy: RegistrationPolicy | None = None,
              decisions: list[dict[str, Any]] | None = None) -> Registrar:
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks(),
                                                        check_status=False)], clock=clock)
    return Registrar(verifier, policy or RegistrationPolicy(),
                     on_decision=None if decisions is None else decisions.append)


def statement(auth: Authority, **values: Any) -> str:
    values.setdefault("software_version", "1.4.2")
    return auth.mint(MintRequest("mcp-connector", values), principal="ci",
                     channel="cli").software_statement


def test_statement_values_take_precedence(auth: Authority) -> None:
    token = statement(auth)
    result = registrar(auth, FixedClock(START)).register({
        "software_statement": token,
        "client_name": "Evil Name",
        "redirect_uris": ["https://evil.example/cb"],
        "token_endpoint_auth_method": "none",
        "scope": "admin",
        "logo_uri": "https://client.example/logo.png",  # not in the statement: kept
    })
    md = result.metadata
    assert md["client_name"] == "Example Calendar Connector"
    assert md["redirect_uris"] == ["https://connectors.example.com/calendar/oauth/callback"]
    assert md["token_endpoint_auth_method"] == "private_key_jwt"
    assert md["scope"] == "calendar.read calendar.events.write"
    assert md["software_version"] == "1.4.2"
    assert md["logo_uri"] == "https://example.com/assets/logo.png"  # the statement had one too
    for claim in ("iss", "iat", "exp", "jti", "status"):
        assert claim not in md
    assert md["software_statement"] == token  # RFC 7591 section 3.2.1: echoed unmodified
    assert result.statement is not None and result.statement.issuer == ISS


def test_audit_fields(auth: Authority) -> None:
    decisions: list[dict[str, Any]] = []
    token = statement(auth)
    result = registrar(auth, FixedClock(START), decisions=decisions).register(
        {"software_statement": token, "scope": "calendar.read"})
    audit = result.audit
    assert decisions == [audit]
    active = auth.keystore.active()
    assert audit["decision"] == "accepted" and audit["timestamp"] == START
    assert audit["statement_issuer"] == ISS
    assert audit["statement_digest"] == result.statement.digest  # type: ignore[union-attr]
    assert audit["kid"] == active.kid and audit["key_thumbprint"] == jwk_thumbprint(active.jwk())
    assert audit["redirect_uris"] == ["https://connectors.example.com/calendar/oauth/callback"]
    assert audit["requested_scope"] == "calendar.read"
    assert audit["granted_scope"] == "calendar.read calendar.events.write"
    assert audit["token_endpoint_auth_method"] == "private_key_jwt"
    assert audit["jwks_uri"] == "https://connectors.example.com/calendar/jwks.json"
    assert audit["software_id"] and audit["software_version"] == "1.4.2"
    with pytest.raises(IssuerError):
        registrar(auth, FixedClock(START), decisions=decisions).register(
            {"software_statement": token[:-3] + "AAA"})
    assert decisions[-1]["decision"] == "rejected"
    assert decisions[-1]["error"] == "invalid_software_statement"


@pytest.mark.parametrize(
    ("policy", "request_extra", "error", "text"),
    [
        (RegistrationPolicy(redirect_uris_subset=True),
         {"redirect_uris": ["https://evil.example/cb"]}, InvalidRedirectURI, "not in the software statement"),
        (RegistrationPolicy(scope_subset=True), {"scope": "calendar.read admin"},
         InvalidClientMetadata, "['admin'] is not in the software statement"),
        (RegistrationPolicy(jwks_uri_must_match=True), {"jwks_uri": "https://evil.example/jwks"},
         InvalidClientMetadata, "jwks_uri differs"),
    ],
)
def test_policies_refuse(auth: Authority, policy: RegistrationPolicy, request_extra: dict,
                         error: type, text: str) -> None:
    with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
        registrar(auth, FixedClock(START), policy).register(
            {"software_statement": statement(auth), **request_extra})


def test_policies_accept_what_fits(auth: Authority) -> None:
    policy = RegistrationPolicy(redirect_uris_subset=True, scope_subset=True,
                                jwks_uri_must_match=True)
    result = registrar(auth, FixedClock(START), policy).register({
        "software_statement": statement(auth),
        "redirect_uris": ["https://connectors.example.com/calendar/oauth/callback"],
        "scope": "calendar.read",
        "jwks_uri": "https://connectors.example.com/calendar/jwks.json"})
    assert result.metadata["scope"] == "calendar.read"  # the narrower request is granted


def test_iat_freshness(auth: Authority) -> None:
    token = statement(auth)
    clock = FixedClock(START + 300)
    policy = RegistrationPolicy(max_iat_age=300)
    assert registrar(auth, clock, policy).register({"software_statement": token})
    clock.advance(61)
    with pytest.raises(InvalidSoftwareStatement, match="accepts 300s"):
        registrar(auth, clock, policy).register({"software_statement": token})


def test_one_time_use(auth: Authority) -> None:
    clock = FixedClock(START)
    policy = RegistrationPolicy(replay_cache=MemoryReplayCache(clock))
    reg = registrar(auth, clock, policy)
    token = statement(auth)
    assert reg.register({"software_statement": token})
    with pytest.raises(InvalidSoftwareStatement, match="already used"):
        reg.register({"software_statement": token})
    assert reg.register({"software_statement": statement(auth)})  # a new jti is fine


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ([], InvalidClientMetadata, "JSON object"),
        ({"client_name": "no statement"}, InvalidSoftwareStatement, "required"),
        ({"software_statement": 5}, InvalidSoftwareStatement, "not a string"),
        ({"software_statement": "x.y.z"}, InvalidSoftwareStatement, "base64url"),
    ],
)
def test_bad_requests(auth: Authority, body: Any, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        registrar(auth, FixedClock(START)).register(body)


def test_request_values_are_still_checked(auth: Authority) -> None:
    reg = registrar(auth, FixedClock(START))
    with pytest.raises(InvalidClientMetadata, match="client_secret"):
        reg.register({"software_statement": statement(auth), "client_secret": "mine"})
    with pytest.raises(InvalidRedirectURI):
        reg.register({"software_statement": statement(auth),
                      "post_logout_redirect_uris": ["http://evil.example/out"]})
    open_reg = registrar(auth, FixedClock(START), RegistrationPolicy(require_statement=False))
    assert open_reg.register({"redirect_uris": ["https://a.example/cb"]}).statement is None


# --- each check at its bound -------------------------------------------------------------------


def test_iat_freshness_at_its_bound(auth: Authority) -> None:
    token = statement(auth)
    policy = RegistrationPolicy(max_iat_age=300)
    assert registrar(auth, FixedClock(START + 360), policy).register(
        {"software_statement": token})  # 300 s plus the verifier's 60 s leeway
    with pytest.raises(InvalidSoftwareStatement, match=r"issued 361s ago; this server accepts"):
        registrar(auth, FixedClock(START + 361), policy).register({"software_statement": token})


def test_a_replay_cache_forgets_a_statement_once_it_expires() -> None:
    clock = FixedClock(START)
    cache = MemoryReplayCache(clock)
    assert cache.first_use(ISS, "j", START + 10)
    assert not cache.first_use(ISS, "j", START + 10)
    assert cache.first_use("https://other.example", "j", START + 10)  # per issuer
    clock.advance(9)
    assert not cache.first_use(ISS, "j", START + 10)
    clock.advance(1)
    assert cache.first_use(ISS, "j", START + 20)  # expired: it can't verify any more anyway
    assert not cache.first_use(ISS, "j", START + 20)


def test_a_full_replay_cache_drops_only_expired_entries() -> None:
    clock = FixedClock(START)
    cache = MemoryReplayCache(clock)
    for i in range(10_001):
        cache.first_use(ISS, f"old-{i}", START + 1)
    assert cache.first_use(ISS, "live", START + 100)
    clock.advance(1)
    assert cache.first_use(ISS, "trigger", START + 100)  # 10,002 entries: pruned
    assert len(cache._seen) <= 3
    assert not cache.first_use(ISS, "live", START + 100)


def test_one_time_use_needs_a_jti(auth: Authority) -> None:
    clock = FixedClock(START)
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks(),
                                                        check_status=False)], clock=clock)
    seen: list[tuple[str, str, int]] = []

    class Spy(MemoryReplayCache):
        def first_use(self, issuer: str, jti: str, exp: int) -> bool:
            seen.append((issuer, jti, exp))
            return super().first_use(issuer, jti, exp)

    reg = Registrar(verifier, RegistrationPolicy(replay_cache=Spy(clock)))
    token = statement(auth)
    result = reg.register({"software_statement": token})
    assert result.statement is not None
    assert seen == [(ISS, result.statement.claims["jti"],
                     result.statement.claims["exp"] + verifier.leeway)]
    import json as _json

    from issuer.core.encoding import b64url_decode
    from issuer.core.statements import encode_payload
    claims = _json.loads(b64url_decode(token.split(".")[1]))
    del claims["jti"]
    no_jti = auth.keystore.signer().sign(encode_payload(claims))
    with pytest.raises(InvalidSoftwareStatement, match="has no jti"):
        reg.register({"software_statement": no_jti})


@pytest.mark.parametrize(("policy", "request_extra", "error", "text"), [
    (RegistrationPolicy(redirect_uris_subset=True),
     {"redirect_uris": "https://connectors.example.com/calendar/oauth/callback"},
     InvalidRedirectURI, "must be an array"),
    (RegistrationPolicy(scope_subset=True), {"scope": ["calendar.read"]},
     InvalidClientMetadata, "is not in the software statement"),
    (RegistrationPolicy(redirect_uris_subset=True),
     {"redirect_uris": ["https://connectors.example.com/calendar/oauth/callback",
                        "https://evil.example/cb"]},
     InvalidRedirectURI, r"\['https://evil.example/cb'\] are not"),
])
def test_policies_refuse_malformed_requests(auth: Authority, policy: RegistrationPolicy,
                                            request_extra: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        registrar(auth, FixedClock(START), policy).register(
            {"software_statement": statement(auth), **request_extra})


def test_policies_off_let_the_statement_decide(auth: Authority) -> None:
    """Without the policies the request's values never reach the registration anyway."""
    result = registrar(auth, FixedClock(START)).register({
        "software_statement": statement(auth), "scope": "admin",
        "redirect_uris": ["https://evil.example/cb"], "jwks_uri": "https://evil.example/j"})
    assert result.metadata["scope"] == "calendar.read calendar.events.write"
    assert result.metadata["jwks_uri"] == "https://connectors.example.com/calendar/jwks.json"


def test_a_request_nested_too_deep_is_refused(auth: Authority) -> None:
    from issuer.verifier.jose import MAX_JSON_DEPTH
    deep: Any = "x"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    with pytest.raises(InvalidClientMetadata, match="nested deeper than"):
        registrar(auth, FixedClock(START)).register(
            {"software_statement": statement(auth), "x": deep})
    # one level less (the request object itself is a level) is within the limit
    assert registrar(auth, FixedClock(START)).register(
        {"software_statement": statement(auth), "x": deep[0]}).metadata["x"] == deep[0]


def test_a_bug_met_by_hostile_input_is_a_recorded_refusal(auth: Authority) -> None:
    decisions: list[dict[str, Any]] = []
    reg = registrar(auth, FixedClock(START), decisions=decisions)

    def broken(statement: Any) -> None:
        raise KeyError("boom")

    reg.verifier.check_status = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        reg.register({"software_statement": statement(auth)})
    assert decisions[-1]["decision"] == "rejected"
    assert decisions[-1]["error"] == "server_error"
    assert decisions[-1]["error_description"] == "KeyError while registering"
    assert "accepted" not in [d["decision"] for d in decisions]


def test_client_key_thumbprints_are_recorded(auth: Authority) -> None:
    from issuer.verifier.registration import _thumbprints
    key = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert _thumbprints({"keys": [key, {"kty": "nope"}]}) == [jwk_thumbprint(key), None]
    assert _thumbprints({}) == []
    assert _thumbprints([key]) is None


def test_a_replay_cache_without_a_clock_uses_the_system_clock() -> None:
    import time
    cache = MemoryReplayCache()
    assert cache.first_use(ISS, "j", int(time.time()) + 60)
    assert not cache.first_use(ISS, "j", int(time.time()) + 60)


def test_a_statement_is_used_once_for_as_long_as_it_verifies(auth: Authority) -> None:
    """The verifier accepts a statement until ``exp`` plus its leeway (RFC 7519 section 4.1.4),
    so the replay cache must remember it that long too, not only until ``exp``."""
    clock = FixedClock(START)
    policy = RegistrationPolicy(replay_cache=MemoryReplayCache(clock))
    reg = registrar(auth, clock, policy)
    token = statement(auth)
    result = reg.register({"software_statement": token})
    assert result.statement is not None
    clock.advance(result.statement.claims["exp"] - START + 30)  # expired 30 s ago: in leeway
    with pytest.raises(InvalidSoftwareStatement, match="already used"):
        reg.register({"software_statement": token})


@pytest.mark.parametrize("requested", [5, ["http://127.0.0.1/cb"], None])
def test_a_redirect_uri_that_is_not_a_string_matches_nothing(requested: Any) -> None:
    from issuer.verifier.registration import redirect_matches
    assert redirect_matches(requested, "http://127.0.0.1/cb") is False
    assert redirect_matches("http://127.0.0.1/cb", requested) is False


def test_a_statement_without_exp_is_used_once_too(auth: Authority) -> None:
    import json as _json

    from issuer.core.encoding import b64url_decode
    from issuer.core.statements import encode_payload
    clock = FixedClock(START)
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks(),
                                                        check_status=False, require_exp=False)],
                                 clock=clock)
    reg = Registrar(verifier, RegistrationPolicy(replay_cache=MemoryReplayCache(clock)))
    claims = _json.loads(b64url_decode(statement(auth).split(".")[1]))
    del claims["exp"]
    token = auth.keystore.signer().sign(encode_payload(claims))
    assert reg.register({"software_statement": token})
    with pytest.raises(InvalidSoftwareStatement, match="already used"):
        reg.register({"software_statement": token})


def test_the_error_code_names_what_is_wrong(auth: Authority) -> None:
    """RFC 7591 section 3.2.2: invalid_redirect_uri only for redirect URIs."""
    reg = registrar(auth, FixedClock(START))
    with pytest.raises(InvalidClientMetadata) as caught:
        reg.register({"software_statement": statement(auth), "client_secret": "mine"})
    assert type(caught.value) is InvalidClientMetadata
    assert caught.value.error == "invalid_client_metadata"
    with pytest.raises(InvalidRedirectURI) as redirect:
        reg.register({"software_statement": statement(auth),
                      "post_logout_redirect_uris": ["http://evil.example/out"]})
    assert redirect.value.error == "invalid_redirect_uri"


def test_the_audit_records_the_thumbprints_of_keys_registered_by_value(auth: Authority) -> None:
    from tests.verifier.test_policies import signed
    key = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    token = signed(auth, jwks_uri=None, jwks={"keys": [key]})
    result = registrar(auth, FixedClock(START)).register({"software_statement": token})
    assert result.audit["jwk_thumbprints"] == [jwk_thumbprint(key)]
    assert result.audit["jwks_uri"] is None


def test_the_audit_records_the_statements_jti(auth: Authority) -> None:
    result = registrar(auth, FixedClock(START)).register({"software_statement": statement(auth)})
    assert result.statement is not None
    assert result.audit["statement_jti"] == result.statement.claims["jti"]
    assert isinstance(result.audit["statement_jti"], str)


def test_the_audit_records_the_thumbprint_of_the_key_that_verified(auth: Authority) -> None:
    """The key named by the statement's kid, not another key of the set, and also when the set
    is fetched from the issuer's jwks_uri."""
    from tests.verifier.test_verifier import FakeIssuer, verifier_for
    active = auth.keystore.active()
    decoy = {"kty": "OKP", "crv": "Ed25519", "kid": "decoy",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    clock = FixedClock(START)
    verifier = StatementVerifier(trusted=[TrustedIssuer(
        issuer=ISS, jwks={"keys": [decoy, *auth.jwks()["keys"]]}, check_status=False)],
        clock=clock)
    audit = Registrar(verifier).register({"software_statement": statement(auth)}).audit
    assert audit["key_thumbprint"] == jwk_thumbprint(active.jwk())
    remote = verifier_for(FakeIssuer(auth), clock, check_status=False)
    audit = Registrar(remote).register({"software_statement": statement(auth)}).audit
    assert audit["key_thumbprint"] == jwk_thumbprint(active.jwk())


def test_a_refusal_is_recorded_with_its_reason(auth: Authority) -> None:
    decisions: list[dict[str, Any]] = []
    with pytest.raises(InvalidSoftwareStatement) as caught:
        registrar(auth, FixedClock(START), decisions=decisions).register({"client_name": "x"})
    assert decisions == [{**decisions[0], "decision": "rejected",
                          "error": "invalid_software_statement",
                          "error_description": caught.value.description}]
    assert "required" in decisions[0]["error_description"]


def test_open_registration_and_a_non_string_requested_scope(auth: Authority) -> None:
    open_reg = registrar(auth, FixedClock(START), RegistrationPolicy(require_statement=False))
    result = open_reg.register({"redirect_uris": ["https://a.example/cb"]})
    assert result.metadata == {"redirect_uris": ["https://a.example/cb"]}
    with pytest.raises(InvalidClientMetadata):
        open_reg.register({"redirect_uris": ["https://a.example/cb"], "scope": ["a"]})
    audit = registrar(auth, FixedClock(START)).register(
        {"software_statement": statement(auth), "scope": ["admin"]}).audit
    assert audit["requested_scope"] is None  # only a string is a requested scope
