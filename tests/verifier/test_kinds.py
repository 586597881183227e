"""Only statements verify as statements (RFC 8725 sections 3.11-3.12), and hostile input is a
clean, coded, recorded refusal: at the library, `StatementVerifier`, `Registrar` and
`issuer verify`. (The Authlib example served over HTTP: tests/verifier/test_authlib.py.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url, b64url_decode
from issuer.core.errors import InvalidClientMetadata, InvalidSoftwareStatement, IssuerError
from issuer.core.statements import MintRequest, encode_payload
from issuer.verifier import Registrar, RegistrationPolicy, StatementVerifier, TrustedIssuer, verify
from issuer.verifier.jose import MAX_JSON_DEPTH, json_depth
from tests.conftest import START, Cli, assert_one_line_error

ISS = "https://issuer.example.com"


def statement(auth: Authority) -> str:
    return auth.mint(MintRequest("mcp-connector", {"software_version": "1.4.2"}), principal="ci",
                     channel="cli").software_statement


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


def other_kinds(auth: Authority) -> dict[str, str]:
    """Every other JWT this issuer signs, as served, and each payload re-signed by the issuer's
    key under ``typ: JWT`` (what a header check alone would let through)."""
    ref = claims_of(statement(auth))["status"]["status_list"]
    status_list = auth.status.document(ref["uri"].rsplit("/", 1)[1], auth.keystore)[0]
    historical = auth.keys.historical_keys_jwt()
    signer = auth.keystore.signer()
    return {
        "status list token": status_list,
        "historical keys": historical,
        "status list claims as typ JWT": signer.sign(encode_payload(claims_of(status_list))),
        "historical keys claims as typ JWT": signer.sign(encode_payload(claims_of(historical))),
    }


def verifier(auth: Authority, **options: Any) -> StatementVerifier:
    return StatementVerifier(trusted=[TrustedIssuer(issuer=ISS, jwks=auth.jwks(),
                                                    check_status=False, **options)],
                             clock=auth.clock)


def test_no_other_kind_of_token_verifies_as_a_statement(auth: Authority) -> None:
    kinds = other_kinds(auth)
    lenient = verifier(auth, require_exp=False)  # the historical keys document has no exp
    decisions: list[dict[str, Any]] = []
    registrar = Registrar(lenient, RegistrationPolicy(), on_decision=decisions.append)
    for name, token in kinds.items():
        expected = "typ" if "typ JWT" not in name else "another kind of token"
        with pytest.raises(InvalidSoftwareStatement, match=expected):
            verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock, require_exp=False)
        with pytest.raises(InvalidSoftwareStatement, match=expected):
            lenient.verify(token)
        with pytest.raises(InvalidSoftwareStatement, match=expected):
            registrar.register({"software_statement": token,
                                "redirect_uris": ["https://evil.example/cb"]})
        assert decisions[-1]["decision"] == "rejected", name
        assert decisions[-1]["error"] == "invalid_software_statement", name
    assert lenient.verify(statement(auth)).issuer == ISS  # a real statement still verifies


def test_issuer_verify_refuses_other_kinds(cli: Cli, auth: Authority) -> None:
    for name, token in other_kinds(auth).items():
        result = cli("verify", token, "--no-status-check")
        assert_one_line_error(result, 1, "software statement rejected")
        assert "typ" in result.stderr or "another kind of token" in result.stderr, name


def _signed(header: dict[str, Any], claims: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    token = jws.serialize_compact({"alg": "ES256", "kid": "k1", **header},
                                  json.dumps(claims).encode(), key)
    return token, {"keys": [key.as_dict(private=False)]}


GOOD = {"iss": ISS, "iat": START, "exp": START + 3600, "client_name": "x",
        "grant_types": ["client_credentials"], "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": "https://client.example/jwks.json"}


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "application/jwt", "Application/JWT"])
def test_statement_types_that_verify(typ: str | None) -> None:
    token, jwks = _signed({} if typ is None else {"typ": typ}, GOOD)
    assert verify(token, jwks=jwks, issuer=ISS, clock=FixedClock(START)).claims == GOOD


@pytest.mark.parametrize(
    ("header", "claims", "text"),
    [
        ({"typ": "statuslist+jwt"}, GOOD, "typ 'statuslist+jwt'"),
        ({"typ": "jwk-set+jwt"}, GOOD, "typ 'jwk-set+jwt'"),
        ({"typ": "at+jwt"}, GOOD, "typ 'at+jwt'"),
        ({"typ": "JWT", "cty": "JWT"}, GOOD, "'cty'"),
        ({"typ": "JWT"}, {**GOOD, "status_list": {"bits": 1, "lst": "eNo"}}, "'status_list'"),
        ({"typ": "JWT"}, {**GOOD, "keys": []}, "'keys'"),
        ({"typ": "JWT"}, {**GOOD, "ttl": 300}, "'ttl'"),
    ],
)
def test_other_kinds_are_refused(header: dict[str, Any], claims: dict[str, Any],
                                 text: str) -> None:
    token, jwks = _signed(header, claims)
    with pytest.raises(InvalidSoftwareStatement, match=re.escape(text)):
        verify(token, jwks=jwks, issuer=ISS, clock=FixedClock(START))


# --- hostile input -------------------------------------------------------------------------


def _raw(header: str, payload: str) -> str:
    return b64url(header.encode()) + "." + b64url(payload.encode()) + ".c2ln"


DEEP = "[" * 20_000 + "]" * 20_000  # under the 64 KiB bound, far over any recursion limit


@pytest.mark.parametrize(
    ("token", "text"),
    [
        (_raw(DEEP, "{}"), "header is nested deeper"),
        (_raw('{"alg":"ES256","x":' + "[" * 20 + "]" * 20 + "}", "{}"), "header is nested deeper"),
        (_raw('{"alg":"ES256"}', '{"iss":"' + ISS + '","x":' + DEEP + "}"),
         "payload is nested deeper"),
        (_raw('{"alg":"ES256"}', '{"iss":"' + ISS + '","exp":NaN}'), "payload is not JSON"),
        (_raw('{"alg":"ES256"}', '{"iss":"' + ISS + '","iat":Infinity}'),
         "payload is not JSON"),
        (_raw('{"alg":"ES256"}', '{"iss":"' + ISS + '","exp":-Infinity}'),
         "payload is not JSON"),
    ],
)
def test_hostile_tokens_are_coded_and_recorded(auth: Authority, token: str, text: str) -> None:
    decisions: list[dict[str, Any]] = []
    registrar = Registrar(verifier(auth), RegistrationPolicy(), on_decision=decisions.append)
    with pytest.raises(InvalidSoftwareStatement, match=text):
        registrar.register({"software_statement": token})
    assert decisions == [{"timestamp": START, "requested_scope": None, "decision": "rejected",
                          "error": "invalid_software_statement",
                          "error_description": decisions[0]["error_description"]}]
    with pytest.raises(InvalidSoftwareStatement, match=text):
        verify(token, jwks=auth.jwks(), issuer=ISS)


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels deep: objects and arrays, alternating."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"n": value} if level % 2 else [value]
    return value


def test_json_depth_counts_objects_and_arrays() -> None:
    assert [json_depth(nested(d)) for d in range(5)] == [0, 1, 2, 3, 4]
    assert json_depth({"a": 1, "b": [[], {"c": [2]}]}) == 4


def test_json_nested_to_the_limit_verifies_and_one_level_more_is_refused() -> None:
    """MAX_JSON_DEPTH is the deepest a header or payload may nest, counting the top object."""
    at_limit, jwks = _signed({}, {**GOOD, "x": nested(MAX_JSON_DEPTH - 1)})
    assert verify(at_limit, jwks=jwks, issuer=ISS, clock=FixedClock(START))
    deeper, jwks = _signed({}, {**GOOD, "x": nested(MAX_JSON_DEPTH)})
    with pytest.raises(InvalidSoftwareStatement,
                       match=f"payload is nested deeper than {MAX_JSON_DEPTH} levels"):
        verify(deeper, jwks=jwks, issuer=ISS, clock=FixedClock(START))
    # the header too (not signed here: at the limit it fails only at the signature)
    for depth, text in ((MAX_JSON_DEPTH, "signature does not verify"),
                        (MAX_JSON_DEPTH + 1, "header is nested deeper")):
        header = json.dumps({"alg": "ES256", "kid": "k1", "x": nested(depth - 1)})
        with pytest.raises(InvalidSoftwareStatement, match=text):
            verify(_raw(header, json.dumps(GOOD)), jwks=jwks, issuer=ISS, clock=FixedClock(START))


@pytest.mark.parametrize("value", [1e400, -1e400])
def test_infinite_numeric_dates_are_refused_after_the_signature(auth: Authority,
                                                                value: float) -> None:
    """1e400 is valid JSON that Python reads as infinity; signed by the real key."""
    signer = auth.keystore.signer()
    good = claims_of(statement(auth))
    for name in ("exp", "iat"):
        body = json.dumps({**good, name: "X"}).replace('"X"', "1e400" if value > 0 else "-1e400")
        token = signer.sign(body.encode())
        with pytest.raises(InvalidSoftwareStatement, match=f"'{name}' is not a NumericDate"):
            verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)


def test_hostile_requests_are_coded_and_recorded(auth: Authority) -> None:
    decisions: list[dict[str, Any]] = []
    registrar = Registrar(verifier(auth), RegistrationPolicy(), on_decision=decisions.append)
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    for body, error in (([], InvalidClientMetadata), ({"client_name": deep}, InvalidClientMetadata),
                        ({"software_statement": {"a": 1}}, InvalidSoftwareStatement)):
        with pytest.raises(IssuerError) as info:
            registrar.register(body)
        assert type(info.value) is error
        assert decisions[-1]["decision"] == "rejected"
        assert decisions[-1]["error"] == error.error
    assert len(decisions) == 3


def test_issuer_verify_refuses_hostile_tokens(cli: Cli) -> None:
    result = cli("verify", _raw(DEEP, "{}"), "--no-status-check")
    assert_one_line_error(result, 1, "nested deeper")


def test_an_unexpected_failure_is_still_a_recorded_refusal(auth: Authority) -> None:
    """A replay store that fails (a Redis outage) refuses and records: never a registration."""

    class Broken:
        def first_use(self, issuer: str, jti: str, exp: int) -> bool:
            raise ConnectionError("replay store unreachable")

    decisions: list[dict[str, Any]] = []
    registrar = Registrar(verifier(auth), RegistrationPolicy(replay_cache=Broken()),
                          on_decision=decisions.append)
    with pytest.raises(ConnectionError):
        registrar.register({"software_statement": statement(auth)})
    assert decisions[-1]["decision"] == "rejected"
    assert decisions[-1]["error"] == "server_error"
    assert decisions[-1]["error_description"] == "ConnectionError while registering"


def test_nesting_is_bounded_at_sixteen_levels_whatever_the_brackets_in_strings() -> None:
    """The depth bound (16) is exact: 16 levels of arrays or objects parse, 17 are refused;
    brackets inside strings are text, however many there are."""
    from issuer.verifier.jose import MAX_JSON_DEPTH, strict_json

    assert MAX_JSON_DEPTH == 16
    assert strict_json(b"[" * 16 + b"]" * 16, "payload") == [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]
    objects = b'{"a":' * 16 + b"1" + b"}" * 16
    assert strict_json(objects, "payload")["a"]["a"]
    for deeper in (b"[" * 17 + b"]" * 17, b'{"a":' * 17 + b"1" + b"}" * 17,
                   b'{"a":[' * 9 + b"1" + b"]}" * 9,
                   b'{"a":[{"b":' + b"[" * 14 + b"]" * 14 + b"}]}"):
        with pytest.raises(InvalidSoftwareStatement, match="payload is nested deeper than 16"):
            strict_json(deeper, "payload")
    text = json.dumps({"note": "[{" * 500, "uris": [["x"]]}).encode()
    assert strict_json(text, "payload")["uris"] == [["x"]]
