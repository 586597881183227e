"""Verification as an authorization server must do it; interop with PyJWT."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import OKPAlgorithm

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url, b64url_decode
from issuer.core.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement
from issuer.core.statements import MintRequest, encode_payload
from issuer.verifier.jose import DEFAULT_LEEWAY, MAX_TOKEN_BYTES
from issuer.verifier.statement import verify
from tests.conftest import START, Cli, assert_one_line_error

ISS = "https://issuer.example.com"


def minted(auth: Authority, template: str = "desktop-agent") -> str:
    return auth.mint(MintRequest(template, {"software_version": "1.0"}), principal="a",
                     channel="cli").software_statement


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()),
                     b64url(signature)])


def signed_by_issuer(auth: Authority, payload: dict[str, Any]) -> str:
    """A payload of our choosing, really signed by the issuer's active key."""
    return auth.keystore.signer().sign(encode_payload(payload))


def good_payload(**changes: Any) -> dict[str, Any]:
    payload = {"iss": ISS, "iat": START, "exp": START + 3600, "jti": "j",
               "software_id": "s", "redirect_uris": ["https://a.example.com/cb"]}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_fresh_statement_verifies(auth: Authority) -> None:
    token = minted(auth)
    result = verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    assert result.claims["software_version"] == "1.0"
    assert result.kid == auth.keystore.active().kid and result.alg == "ES256"
    assert result.digest == hashlib.sha256(token.encode()).hexdigest()
    assert result.header == json.loads(b64url_decode(token.split(".")[0]))
    assert result.claims == json.loads(b64url_decode(token.split(".")[1]))
    assert result.issuer == ISS


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "RS256", "Ed25519"])
def test_pyjwt_verifies_with_only_the_published_jwks(auth: Authority, cli: Cli, alg: str) -> None:
    auth.keys.generate(alg, activate=True, actor="t", channel="cli", rsa_bits=2048)
    token = minted(auth)
    jwks = json.loads(cli("jwks").stdout)  # only what `issuer jwks` prints
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    decoder = pyjwt.PyJWT()
    if alg == "Ed25519":
        # PyJWT 2.x knows only the polymorphic "EdDSA" name (RFC 8037); RFC 9864 names it
        # "Ed25519". Registering the fully-specified name is all a PyJWT verifier needs.
        decoder._jws.register_algorithm("Ed25519", OKPAlgorithm())
        key = pyjwt.PyJWK({**jwk, "alg": "EdDSA"}).key
    else:
        key = pyjwt.PyJWK(jwk).key
    claims = decoder.decode(token, key, algorithms=[alg], issuer=ISS,
                            options={"require": ["iss", "exp", "iat"], "verify_iat": False},
                            leeway=10 ** 9)
    assert claims["iss"] == ISS and claims["software_version"] == "1.0"


def test_tampered_statement_is_refused(auth: Authority) -> None:
    header, payload, sig = minted(auth).split(".")
    claims = json.loads(pyjwt.utils.base64url_decode(payload))
    claims["redirect_uris"] = ["https://evil.example/cb"]
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), sig])
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify"):
        verify(tampered, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    flipped = ".".join([header, payload, sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")])
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify"):
        verify(flipped, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)


def test_wrong_issuer_is_unapproved(auth: Authority) -> None:
    with pytest.raises(UnapprovedSoftwareStatement) as info:
        verify(minted(auth), jwks=auth.jwks(), issuer="https://other.example", clock=auth.clock)
    assert info.value.error == "unapproved_software_statement"


def test_expired_statement_is_refused(auth: Authority) -> None:
    token = minted(auth)  # desktop-agent lives 90 days
    later = FixedClock(START + 90 * 86400 + 61)
    with pytest.raises(InvalidSoftwareStatement, match="expired"):
        verify(token, jwks=auth.jwks(), issuer=ISS, clock=later)
    within_leeway = FixedClock(START + 90 * 86400 + 30)
    assert verify(token, jwks=auth.jwks(), issuer=ISS, clock=within_leeway)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (good_payload(exp=None), "claim 'exp' is missing"),
        (good_payload(iat=None), "claim 'iat' is missing"),
        (good_payload(iat=START + 3600), "issued in the future"),
        (good_payload(nbf=START + 3600), "not valid before"),
        (good_payload(exp="tomorrow"), "not a NumericDate"),
        (good_payload(redirect_uris=["http://evil.example/cb"]), "claim 'redirect_uris'"),
        (good_payload(client_secret="leaked"), "claim 'client_secret'"),
        (good_payload(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "claim 'jwks'"),
    ],
)
def test_signed_but_invalid_payloads(auth: Authority, payload: dict[str, Any], text: str) -> None:
    with pytest.raises(InvalidSoftwareStatement) as info:
        verify(signed_by_issuer(auth, payload), jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    assert text in info.value.description


def test_algorithms_outside_the_allow_list(auth: Authority) -> None:
    kid = auth.keystore.active().kid
    payload = good_payload()
    none = forge({"alg": "none", "kid": kid}, payload)
    with pytest.raises(InvalidSoftwareStatement, match="alg 'none' is not allowed"):
        verify(none, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    # HMAC keyed with the public key, the classic algorithm-confusion forgery (RFC 8725 s2.1)
    public = json.dumps(auth.jwks()["keys"][0]).encode()
    signing_input = forge({"alg": "HS256", "kid": kid}, payload).rsplit(".", 1)[0]
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidSoftwareStatement, match="alg 'HS256' is not allowed"):
        verify(signing_input + "." + b64url(mac), jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    with pytest.raises(InvalidSoftwareStatement, match="alg 'ES512' is not allowed"):
        verify(forge({"alg": "ES512", "kid": kid}, payload, b"x"), jwks=auth.jwks(), issuer=ISS)
    # A configured allow-list narrows it further; HMAC can't be put back in.
    token = minted(auth)
    with pytest.raises(InvalidSoftwareStatement, match="not allowed"):
        verify(token, jwks=auth.jwks(), issuer=ISS, algorithms=["EdDSA", "HS256"], clock=auth.clock)


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_eddsa_header_name_verifies_an_ed25519_key(auth: Authority) -> None:
    from joserfc import jws

    from joserfc.jwk import OKPKey

    from issuer.keys.backends.file import Passphrase, read_private

    key = auth.keys.generate("Ed25519", activate=True, actor="t", channel="cli")
    private = read_private(auth.config.keys_dir / key.ref, Passphrase.of(None))
    token = jws.serialize_compact({"alg": "EdDSA", "kid": key.kid},
                                  encode_payload(good_payload()), OKPKey.import_key(private),
                                  algorithms=["EdDSA"])
    assert verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock).alg == "EdDSA"


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
def test_keys_carried_in_the_header_are_refused(auth: Authority, member: str) -> None:
    token = minted(auth)
    header = json.loads(pyjwt.utils.base64url_decode(token.split(".")[0]))
    header[member] = auth.jwks()["keys"][0] if member == "jwk" else "https://evil.example/k"
    forged = b64url(json.dumps(header).encode()) + "." + token.split(".", 1)[1]
    with pytest.raises(InvalidSoftwareStatement, match=f"header carries '{member}'"):
        verify(forged, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)


def test_unknown_kid_crit_and_wrong_key_type(auth: Authority) -> None:
    payload = good_payload()
    with pytest.raises(InvalidSoftwareStatement, match="unknown key"):
        verify(forge({"alg": "ES256", "kid": "nope"}, payload, b"x"), jwks=auth.jwks(), issuer=ISS)
    with pytest.raises(InvalidSoftwareStatement, match="critical"):
        verify(forge({"alg": "ES256", "crit": ["exp"], "exp": 1}, payload, b"x"),
               jwks=auth.jwks(), issuer=ISS)
    kid = auth.keystore.active().kid
    with pytest.raises(InvalidSoftwareStatement, match="can't verify alg RS256"):
        verify(forge({"alg": "RS256", "kid": kid}, payload, b"x"), jwks=auth.jwks(), issuer=ISS)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "....", "é.é.é", "x" * 70000,
                                   "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln",
                                   b64url(b"[1]") + ".e30.c2ln", "!!.??.**"])
def test_malformed_tokens(auth: Authority, token: str) -> None:
    with pytest.raises(InvalidSoftwareStatement):
        verify(token, jwks=auth.jwks(), issuer=ISS)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                                  max_size=80), min_size=3, max_size=3).map(".".join)))
def test_any_string_is_refused_cleanly(token: str) -> None:
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
                      "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
    with pytest.raises(InvalidSoftwareStatement):
        verify(token, jwks=jwks, issuer=ISS)


# --- issuer verify ----------------------------------------------------------------------------


def test_verify_cli(cli: Cli, tmp_path: Path, file_server: tuple[str, Path]) -> None:
    token = cli("mint", "desktop-agent", "--set", "software_version=9").stdout.strip()
    ok = cli("verify", token)
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["software_version"] == "9"
    assert "verified: iss https://issuer.example.com" in ok.stderr
    piped = cli("verify", "-", input=token + "\n")
    assert piped.exit_code == 0
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(cli("jwks").stdout)
    # Offline there is no status list to fetch: fail closed, unless told not to check it.
    assert_one_line_error(cli("verify", token, "--jwks", str(jwks_file), "--issuer", ISS,
                              config=False), 1, "status list", "unavailable")
    offline = cli("verify", token, "--jwks", str(jwks_file), "--issuer", ISS, "--json",
                  "--no-status-check", config=False)
    assert offline.exit_code == 0 and json.loads(offline.stdout)["valid"] is True
    url, www = file_server
    (www / "jwks.json").write_text(jwks_file.read_text())
    remote = cli("verify", token, "--jwks", f"{url}/jwks.json", "--issuer", ISS,
                 "--no-status-check", config=False)
    assert remote.exit_code == 0, remote.stderr
    assert_one_line_error(cli("verify", token, "--issuer", "https://other.example"), 1,
                          "is not the expected issuer")
    assert_one_line_error(cli("verify", token[:-4] + "AAAA"), 1, "signature does not verify")
    assert_one_line_error(cli("verify", "gar.ba.ge"), 1, "header is not JSON")
    assert_one_line_error(cli("verify", "garbage"), 2, "cannot read garbage")
    assert_one_line_error(cli("verify", "", input=""), 2, "no statement given")
    assert_one_line_error(cli("verify", token, "--jwks", str(tmp_path / "none.json"), "--issuer",
                              ISS, config=False), 2, "cannot read JWKS file")
    assert_one_line_error(cli("verify", token, "--jwks", f"{url}/missing.json", "--issuer", ISS,
                              config=False), 1, "HTTP 404")
    (www / "bad.json").write_text('{"no": "keys"}')
    assert_one_line_error(cli("verify", token, "--jwks", f"{url}/bad.json", "--issuer", ISS,
                              config=False), 1, "not a JWK Set")
    assert_one_line_error(cli("verify", token, "--jwks", "http://jwks.example.com/k.json",
                              "--issuer", ISS, config=False), 2, "must use https")


def test_verify_cli_refuses_expired(home: Path, cli: Cli) -> None:
    past = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(1_600_000_000))
    token = minted(past)
    past.close()
    assert_one_line_error(cli("verify", token), 1, "expired")


def test_verify_cli_reads_a_file_and_answers_json_on_refusal(cli: Cli, tmp_path: Path) -> None:
    token = cli("mint", "desktop-agent", "--set", "software_version=9").stdout.strip()
    saved = tmp_path / "statement.jwt"
    saved.write_text(token + "\n")
    from_file = cli("verify", str(saved), "--json")
    assert from_file.exit_code == 0, from_file.stderr
    assert json.loads(from_file.stdout)["claims"]["software_version"] == "9"
    assert_one_line_error(cli("verify", str(tmp_path / "missing.jwt")), 2, "No such file")
    saved.write_text(token[:-4] + "AAAA")  # a tampered statement, from the file
    refused = cli("verify", str(saved), "--json")
    assert refused.exit_code == 1
    body = json.loads(refused.stdout)
    assert body["valid"] is False and body["error"] == "invalid_software_statement"
    assert "signature does not verify" in body["error_description"]
    assert json.loads(refused.stderr) == {k: body[k] for k in ("error", "error_description")}


def test_an_issuer_mismatch_shows_both_values(cli: Cli, tmp_path: Path) -> None:
    token = cli("mint", "desktop-agent", "--set", "software_version=9").stdout.strip()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(cli("jwks").stdout)
    # a trailing slash is invisible unless both values are shown
    assert_one_line_error(cli("verify", token, "--jwks", str(jwks_file), "--issuer", ISS + "/",
                              "--no-status-check", config=False), 1,
                          f"issuer '{ISS}' is not trusted here (the trusted issuer is '{ISS}/'")
    assert_one_line_error(cli("verify", token, "--issuer", ISS + "/"), 1,
                          f"iss '{ISS}' is not the expected issuer '{ISS}/'")


def test_verify_client_id_refusal_is_json_too(cli: Cli) -> None:
    refused = cli("verify", "--client-id", "http://example.com/client.json", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout) == {"valid": False, **json.loads(refused.stderr)}
    assert json.loads(refused.stderr)["error"] == "invalid_client"
    # a usage error is no refusal: nothing on stdout
    usage = cli("verify", "x.y.z", "--client-id", "https://example.com/c.json", "--json")
    assert usage.exit_code == 2 and usage.stdout == ""


@pytest.mark.parametrize("member", [{"use": "enc"}, {"alg": "ES384"}])
def test_a_jwk_declared_for_something_else_never_verifies(auth: Authority,
                                                          member: dict[str, str]) -> None:
    """RFC 7517 sections 4.2 and 4.4: a key published for encryption, or for another alg, is
    not a key for this signature, even when the bytes would verify."""
    token = minted(auth)
    kid = auth.keystore.active().kid
    jwks = {"keys": [{**k, **member} if k["kid"] == kid else k for k in auth.jwks()["keys"]]}
    with pytest.raises(InvalidSoftwareStatement, match=f"key '{kid}' can't verify alg ES256"):
        verify(token, jwks=jwks, issuer=ISS, clock=auth.clock)


def test_a_key_swapped_under_the_same_kid_is_not_taken_from_the_cache(auth: Authority) -> None:
    """Imported public keys are cached by their whole JWK, not by kid: a JWKS that now holds
    another key under the same kid does not verify what the old key signed."""
    token = minted(auth)
    assert verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)  # cached now
    kid = auth.keystore.active().kid
    other = auth.keys.generate("ES256", actor="t", channel="cli")
    swapped = next(k for k in auth.keystore.keys() if k.kid == other.kid).public_jwk
    jwks = {"keys": [{**swapped, "kid": kid, "alg": "ES256", "use": "sig"}]}
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify"):
        verify(token, jwks=jwks, issuer=ISS, clock=auth.clock)


def _private_key(auth: Authority) -> Any:
    from issuer.keys.backends.file import Passphrase, read_private

    return read_private(auth.config.keys_dir / auth.keystore.active().ref, Passphrase.of(None))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "RS256", "Ed25519"])
def test_statements_signed_by_an_outside_signer_verify_here(auth: Authority, alg: str) -> None:
    """The signature check is ours (``cryptography`` over the one parse): PyJWT, signing the
    same payload with the issuer's key, produces tokens it accepts, for every algorithm; ours
    too; and a single flipped payload byte fails under each."""
    auth.keys.generate(alg, activate=True, actor="t", channel="cli", rsa_bits=2048)
    assert verify(minted(auth), jwks=auth.jwks(), issuer=ISS, clock=auth.clock).alg == alg
    encoder = pyjwt.PyJWT()
    if alg == "Ed25519":
        encoder._jws.register_algorithm("Ed25519", OKPAlgorithm())
    kid = auth.keystore.active().kid
    token = encoder.encode(good_payload(), _private_key(auth), algorithm=alg,
                           headers={"kid": kid, "typ": "JWT"})
    result = verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    assert (result.alg, result.kid, result.claims["software_id"]) == (alg, kid, "s")
    header, payload, signature = token.split(".")
    other = b64url(json.dumps(good_payload(software_id="t")).encode())
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify"):
        verify(".".join([header, other, signature]), jwks=auth.jwks(), issuer=ISS,
               clock=auth.clock)


@pytest.mark.parametrize("alg", ["ES256", "ES384"])
def test_an_ecdsa_signature_must_be_r_and_s_of_the_curve_size(auth: Authority, alg: str) -> None:
    """RFC 7518 section 3.4: the JWS signature is R || S, each exactly the curve's size. The
    DER form (what most ECDSA libraries emit) is refused even when it is a valid signature of
    these bytes by this key, and so is R || S with a byte added or one missing."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    auth.keys.generate(alg, activate=True, actor="t", channel="cli")
    kid = auth.keystore.active().kid
    head = b64url(json.dumps({"alg": alg, "kid": kid}).encode())
    signing_input = head + "." + b64url(json.dumps(good_payload()).encode())
    der = _private_key(auth).sign(signing_input.encode(), ec.ECDSA(
        hashes.SHA256() if alg == "ES256" else hashes.SHA384()))
    size = 32 if alg == "ES256" else 48
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert verify(signing_input + "." + b64url(raw), jwks=auth.jwks(), issuer=ISS,
                  clock=auth.clock).alg == alg
    for bad in (der, raw + b"\x00", b"\x00" + raw, raw[:-1], b""):
        with pytest.raises(InvalidSoftwareStatement, match="signature does not verify"):
            verify(signing_input + "." + b64url(bad), jwks=auth.jwks(), issuer=ISS,
                   clock=auth.clock)
    with pytest.raises(InvalidSoftwareStatement, match="signature is not base64url"):
        verify(signing_input + "." + b64url(raw) + "=", jwks=auth.jwks(), issuer=ISS,
               clock=auth.clock)


def test_a_payload_that_is_not_utf8_json_is_refused(auth: Authority) -> None:
    """JSON in a JWT is UTF-8 (RFC 7519 section 7.2): the same claims in UTF-16, even signed
    by the issuer's key, are not a statement."""
    claims = json.dumps(good_payload())
    assert verify(auth.keystore.signer().sign(claims.encode()), jwks=auth.jwks(), issuer=ISS,
                  clock=auth.clock)
    for data in (claims.encode("utf-16"), b"\xef\xbb\xbf" + claims.encode()):
        with pytest.raises(InvalidSoftwareStatement, match="payload is not JSON"):
            verify(auth.keystore.signer().sign(data), jwks=auth.jwks(), issuer=ISS,
                   clock=auth.clock)


def test_metadata_is_checked_for_every_new_payload(auth: Authority) -> None:
    """Payloads whose metadata passed are remembered (one statement is presented by every
    installation); another payload is checked again, even right after a good one, and the
    memory is bounded."""
    from issuer.verifier import statement

    good = signed_by_issuer(auth, good_payload())
    bad = signed_by_issuer(auth, good_payload(redirect_uris=["http://evil.example/cb"]))
    for _ in range(2):
        assert verify(good, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
        with pytest.raises(InvalidSoftwareStatement, match="claim 'redirect_uris'"):
            verify(bad, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)
    for i in range(statement._METADATA_PASSED_MAX + 5):
        verify(signed_by_issuer(auth, good_payload(jti=f"j{i}")), jwks=auth.jwks(), issuer=ISS,
               clock=auth.clock)
    assert 0 < len(statement._METADATA_PASSED) <= statement._METADATA_PASSED_MAX


def test_verify_signature_takes_a_parsed_token_and_keeps_to_the_callers_allow_list(
        auth: Authority) -> None:
    """What a CI token exchange relies on: the token parsed once is verified as parsed, and
    only with the algorithms the caller allows (a CI ID token is RS256 or ES256), never the
    statement defaults."""
    from issuer.verifier.jose import parse_compact, verify_signature

    parsed = parse_compact(minted(auth))  # ES256
    assert json.loads(verify_signature(parsed, auth.jwks(), algorithms=("ES256",)))["iss"] == ISS
    with pytest.raises(InvalidSoftwareStatement, match="alg 'ES256' is not allowed"):
        verify_signature(parsed, auth.jwks(), algorithms=("RS256",))


def test_a_signature_check_with_a_key_of_another_type_is_false_not_an_error(
        auth: Authority) -> None:
    """``select_keys`` only hands over keys that fit the alg; the signature check does not rely
    on it: any other key type is simply not a match."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from issuer.verifier.jose import signature_valid

    keys = {"EC": ec.generate_private_key(ec.SECP256R1()).public_key(),
            "RSA": rsa.generate_private_key(65537, 2048).public_key(),
            "OKP": ed25519.Ed25519PrivateKey.generate().public_key()}
    for alg, own in (("ES256", "EC"), ("ES384", "EC"), ("RS256", "RSA"), ("PS256", "RSA"),
                     ("Ed25519", "OKP"), ("EdDSA", "OKP"), ("HS256", None), ("none", None)):
        for kind, key in keys.items():
            if kind != own:
                assert signature_valid(alg, key, b"a.b", b"\x00" * 64) is False, (alg, kind)


@pytest.mark.parametrize(("alg", "member"), [("ES256", "d"), ("Ed25519", "d"), ("RS256", "d"),
                                             ("RS256", "oth")])
def test_private_members_published_by_mistake_are_never_imported(auth: Authority, alg: str,
                                                                  member: str) -> None:
    """A verifier needs only the public key (RFC 7517 section 4): private members a JWKS
    carries by mistake, here junk that no key library would import, are dropped first."""
    auth.keys.generate(alg, activate=True, actor="t", channel="cli", rsa_bits=2048)
    token = minted(auth)
    kid = auth.keystore.active().kid
    junk: object = [{"r": "AQAB", "d": "AQAB", "t": "AQAB"}] if member == "oth" else "AQAB"
    jwks = {"keys": [{**k, member: junk} if k["kid"] == kid else k for k in auth.jwks()["keys"]]}
    assert verify(token, jwks=jwks, issuer=ISS, clock=auth.clock).kid == kid


#: The prime of the P-256 field (SEC 2 section 2.4.2): (x, P256_PRIME - y) is the negated point.
P256_PRIME = 2 ** 256 - 2 ** 224 + 2 ** 192 + 2 ** 96 - 1


@pytest.mark.parametrize(("alg", "member"), [("ES256", "y"), ("Ed25519", "x"), ("RS256", "n"),
                                             ("RS256", "e")])
def test_a_key_changed_in_one_member_under_the_same_kid_is_not_taken_from_the_cache(
        auth: Authority, alg: str, member: str) -> None:
    """The import cache is keyed by every public member: another key that shares all but one
    of them (the negated EC point shares x, an RSA key with another e shares n) is imported
    afresh and does not verify what the cached key signed."""
    auth.keys.generate(alg, activate=True, actor="t", channel="cli", rsa_bits=2048)
    token = minted(auth)
    assert verify(token, jwks=auth.jwks(), issuer=ISS, clock=auth.clock)  # cached now
    kid = auth.keystore.active().kid
    jwk = next(k for k in auth.jwks()["keys"] if k["kid"] == kid)
    if member == "y":
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        value = b64url((P256_PRIME - y).to_bytes(32, "big"))
    elif member == "e":
        value = b64url((3).to_bytes(1, "big"))
    else:
        other = auth.keys.generate(alg, actor="t", channel="cli", rsa_bits=2048)
        value = next(k for k in auth.jwks()["keys"] if k["kid"] == other.kid)[member]
    assert value != jwk[member]
    with pytest.raises(InvalidSoftwareStatement,
                       match=f"signature does not verify with key '{kid}'$"):
        verify(token, jwks={"keys": [{**jwk, member: value}]}, issuer=ISS, clock=auth.clock)


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_a_short_rsa_key_never_verifies_even_a_real_signature() -> None:
    """RFC 7518 section 3.3: RSA keys of 2048 bits or more. A token really signed by a
    1024-bit key is refused for the key's size, not for its signature."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": "short", "n": b64url(numbers.n.to_bytes(128, "big")),
           "e": b64url(numbers.e.to_bytes(3, "big"))}
    signing_input = forge({"alg": "RS256", "kid": "short"}, good_payload()).rsplit(".", 1)[0]
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSoftwareStatement, match="RSA key 'short' is shorter than 2048 bits"):
        verify(signing_input + "." + b64url(signature), jwks={"keys": [jwk]}, issuer=ISS,
               clock=FixedClock(START))


@pytest.mark.parametrize("jwk", [
    {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},  # not a point of the curve
    {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},  # not 32 bytes
    {"kty": "RSA", "n": "AQAB"},  # no e
])
def test_a_broken_jwk_is_a_clean_refusal(jwk: dict[str, Any]) -> None:
    alg = {"EC": "ES256", "OKP": "Ed25519", "RSA": "RS256"}[jwk["kty"]]
    with pytest.raises(InvalidSoftwareStatement,
                       match="key 'bad' in the issuer's JWKS is not a valid JWK"):
        verify(forge({"alg": alg, "kid": "bad"}, good_payload(), b"x"),
               jwks={"keys": [{**jwk, "kid": "bad"}]}, issuer=ISS, clock=FixedClock(START))


def test_a_key_on_another_curve_does_not_fit_the_alg(auth: Authority) -> None:
    """RFC 7518 section 3.4: ES256 is P-256. A P-384 key, the right kty on the wrong curve,
    is not a candidate for an ES256 header (nor a P-256 key for ES384), even in a JWKS whose
    keys declare no "alg" (it is optional: RFC 7517 section 4.4)."""
    p384 = auth.keys.generate("ES384", actor="t", channel="cli")
    p256 = auth.keystore.active().kid
    jwks = {"keys": [{m: v for m, v in k.items() if m != "alg"} for k in auth.jwks()["keys"]]}
    for alg, kid in (("ES256", p384.kid), ("ES384", p256)):
        with pytest.raises(InvalidSoftwareStatement, match=f"key '{kid}' can't verify alg {alg}"):
            verify(forge({"alg": alg, "kid": kid}, good_payload(), b"x"), jwks=jwks,
                   issuer=ISS, clock=auth.clock)


def test_a_key_declared_with_the_polymorphic_eddsa_name_verifies_ed25519(auth: Authority) -> None:
    """RFC 9864 section 2.2: "EdDSA" on an Ed25519 key (older issuers publish it) is the same
    algorithm as the fully-specified "Ed25519" a token names."""
    auth.keys.generate("Ed25519", activate=True, actor="t", channel="cli")
    token = minted(auth)
    assert json.loads(b64url_decode(token.split(".")[0]))["alg"] == "Ed25519"
    jwks = {"keys": [{**k, "alg": "EdDSA"} if k.get("crv") == "Ed25519" else k
                     for k in auth.jwks()["keys"]]}
    assert verify(token, jwks=jwks, issuer=ISS, clock=auth.clock).alg == "Ed25519"


@pytest.mark.parametrize("jwks", [[], ["keys"], "keys", None, {"keys": {}}, {}])
def test_a_jwks_that_is_not_a_key_set_is_a_clean_refusal(auth: Authority, jwks: Any) -> None:
    with pytest.raises(InvalidSoftwareStatement, match="the issuer's JWKS has no 'keys' array"):
        verify(minted(auth), jwks=jwks, issuer=ISS, clock=auth.clock)


def test_a_token_without_kid_verifies_with_any_key_that_fits() -> None:
    """Without ``kid`` every key of the JWKS that fits the alg is tried (RFC 7515 section
    4.1.4 makes ``kid`` optional), not only the first."""
    from joserfc import jws
    from joserfc.jwk import ECKey

    first, second = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    jwks = {"keys": [first.as_dict(private=False), second.as_dict(private=False)]}
    token = jws.serialize_compact({"alg": "ES256"}, encode_payload(good_payload()), second)
    assert verify(token, jwks=jwks, issuer=ISS, clock=FixedClock(START)).kid is None
    forged = jws.serialize_compact({"alg": "ES256"}, encode_payload(good_payload()),
                                   ECKey.generate_key("P-256"))
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify$"):
        verify(forged, jwks=jwks, issuer=ISS, clock=FixedClock(START))


@pytest.mark.parametrize("kid", [7, ["k"], {"kid": "k"}, True])
def test_a_kid_that_is_not_a_string_is_refused(auth: Authority, kid: Any) -> None:
    """RFC 7515 section 4.1.4: ``kid`` is a string. Even a JWKS that (wrongly) holds the very
    same non-string kid does not match it."""
    jwks = {"keys": [{**k, "kid": kid} for k in auth.jwks()["keys"]]}
    with pytest.raises(InvalidSoftwareStatement, match="kid is not a string"):
        verify(forge({"alg": "ES256", "kid": kid}, good_payload(), b"x"), jwks=jwks, issuer=ISS,
               clock=auth.clock)


@pytest.mark.parametrize(("token", "text"), [
    ("x" * MAX_TOKEN_BYTES, "not a compact JWS"),  # at the limit: refused for its shape only
    ("x" * (MAX_TOKEN_BYTES + 1), f"longer than {MAX_TOKEN_BYTES} bytes"),
    (" e30.b.c\n", "payload is not base64url"),  # surrounding whitespace is not in the token
    ("é.b.c", "non-ASCII"),
    (".b.c", "header.payload.signature"),
    ("a..c", "header.payload.signature"),
    (b64url(b"[1]") + ".e30.c2ln", "header is not a JSON object"),
    ("e30." + b64url(b'"x"') + ".c2ln", "payload is not a JSON object"),
])
def test_malformed_tokens_are_refused_for_what_is_wrong(token: str, text: str) -> None:
    with pytest.raises(InvalidSoftwareStatement, match=re.escape(text)):
        verify(token, jwks={"keys": []}, issuer=ISS, clock=FixedClock(START))


@pytest.mark.parametrize("leeway", [DEFAULT_LEEWAY, 0, 300])
def test_times_hold_to_the_second_at_the_leeway(auth: Authority, leeway: int) -> None:
    """RFC 7519 sections 4.1.4-4.1.6: refused from exp on, before nbf and with iat in the
    future, each allowing ``leeway`` seconds of clock skew and not one more."""
    def check(payload: dict[str, Any], now: int) -> None:
        verify(signed_by_issuer(auth, payload), jwks=auth.jwks(), issuer=ISS, leeway=leeway,
               clock=FixedClock(now))

    exp = START + 3600
    check(good_payload(), exp + leeway - 1)
    with pytest.raises(InvalidSoftwareStatement, match=f"expired at {exp} "):
        check(good_payload(), exp + leeway)
    check(good_payload(iat=START + leeway), START)
    with pytest.raises(InvalidSoftwareStatement, match="issued in the future"):
        check(good_payload(iat=START + leeway + 1), START)
    check(good_payload(nbf=START + leeway), START)
    with pytest.raises(InvalidSoftwareStatement, match=f"not valid before {START + leeway + 1} "):
        check(good_payload(nbf=START + leeway + 1), START)


def test_check_times_requires_exp_unless_told_not_to() -> None:
    """``check_times`` is public: on its own, as in ``verify``, a statement without ``exp``
    never passes unless the caller opts out (RFC 7519 section 4.1.4)."""
    from issuer.verifier.statement import check_times

    with pytest.raises(InvalidSoftwareStatement, match="claim 'exp' is missing"):
        check_times({"iat": START}, START, DEFAULT_LEEWAY)
    check_times({"iat": START}, START, DEFAULT_LEEWAY, require_exp=False)
