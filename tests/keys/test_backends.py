"""The same conformance tests over every key backend: file keys, a real SoftHSM2 token (PKCS#11)
and AWS KMS (moto's server, offline). Minting, the JWKS, rotation with pre-publication,
revocation and historical keys must not care where the private keys live."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from jwt.algorithms import OKPAlgorithm

from issuer.core.authority import Authority, init_issuer
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url_decode, jwk_thumbprint
from issuer.core.errors import Conflict, InvalidSoftwareStatement, KeystoreError
from issuer.core.statements import MintRequest
from issuer.keys.backends.jws import PUBLIC_MEMBERS
from issuer.service.app import create_app
from tests.conftest import START
from tests.keys.backends import kms_uri, moto_kms, softhsm_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["moto_kms"]  # a fixture, used by name

ISS = "https://issuer.example.com"
BACKENDS = ["file", "pkcs11", "awskms"]
ALGS = ["ES256", "ES384", "Ed25519", "PS256", "RS256"]


@pytest.fixture(params=BACKENDS)
def key_backend(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pkcs11":
        return softhsm_token(tmp_path, monkeypatch)
    if request.param == "awskms":
        return kms_uri(request.getfixturevalue("moto_kms"), monkeypatch)
    return "file"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def authority(tmp_path: Path, key_backend: str, clock: FixedClock) -> Iterator[Authority]:
    home = tmp_path / "issuer"
    init_issuer(home, issuer=ISS, alg="ES256", actor="tester", env={}, clock=clock,
                key_backend=key_backend).close()
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    yield auth
    auth.close()


def mint(auth: Authority, version: str = "1.0") -> str:
    return auth.mint(MintRequest("mcp-connector", {"software_version": version}),
                     principal="tester", channel="cli").software_statement


def pyjwt_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What an authorization server using PyJWT does with the served JWKS."""
    header = pyjwt.get_unverified_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    decoder = pyjwt.PyJWT()
    if header["alg"] == "Ed25519":  # RFC 9864's name; PyJWT 2.x knows it as EdDSA
        decoder._jws.register_algorithm("Ed25519", OKPAlgorithm())
        key = pyjwt.PyJWK({**jwk, "alg": "EdDSA"}).key
    else:
        key = pyjwt.PyJWK(jwk).key
    claims: dict[str, Any] = decoder.decode(token, key, algorithms=[header["alg"]], issuer=ISS,
                                            options={"verify_exp": False, "verify_iat": False})
    return claims


def served_jwks(auth: Authority) -> dict[str, Any]:
    body: dict[str, Any] = TestClient(create_app(auth)).get("/.well-known/jwks.json").json()
    return body


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_signs_and_pyjwt_verifies_from_the_served_jwks(
        authority: Authority, alg: str) -> None:
    backend = authority.keystore.backend
    if alg == "PS256" and backend.scheme == "awskms":
        # moto signs PSS with a maximal salt; KMS, like RFC 7518 section 3.5, with one as long
        # as the hash. The probe signature then fails to verify, and the key is refused:
        with pytest.raises(KeystoreError, match="can't sign"):
            authority.keys.generate(alg, activate=True, actor="t", channel="cli")
        pytest.skip("moto's KMS signs PSS with a non-standard salt length (docs/keys.md)")
    if alg not in backend.algs:
        with pytest.raises(KeystoreError, match=f"can't make {alg} keys"):
            authority.keys.generate(alg, activate=True, actor="t", channel="cli")
        return
    key = authority.keys.generate(alg, activate=True, actor="t", channel="cli", rsa_bits=2048)
    token = mint(authority)
    header = pyjwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    jwks = served_jwks(authority)
    assert pyjwt_verify(token, jwks)["software_version"] == "1.0"
    [jwk] = [k for k in jwks["keys"] if k["kid"] == key.kid]
    # kid = RFC 7638 thumbprint of the public key the backend reports; public members only
    assert jwk_thumbprint(jwk) == key.kid
    assert set(jwk) == set(PUBLIC_MEMBERS[jwk["kty"]]) | {"kid", "alg", "use"}
    assert authority.verify(token).claims["iss"] == ISS


def test_long_signing_inputs_are_signed(authority: Authority) -> None:
    """KMS signs at most 4096 bytes of raw message; beyond, a digest (not in moto)."""
    if authority.config.key_backend.startswith("awskms:"):
        pytest.skip("moto's KMS ignores MessageType=DIGEST (docs/keys.md)")
    signer = authority.keystore.signer()
    token = signer.sign(json.dumps({"iss": ISS, "pad": "x" * 20000}).encode())
    assert pyjwt_verify(token, served_jwks(authority))["pad"] == "x" * 20000


def test_rotation_revocation_and_historical_keys(authority: Authority,
                                                 clock: FixedClock) -> None:
    auth = authority
    first = auth.keystore.active()
    old_token = mint(auth, "1")
    [nxt] = auth.keys.by_state("next")
    assert {k["kid"] for k in served_jwks(auth)["keys"]} == {first.kid, nxt.kid}
    # pre-publication: the next key signs only once verifiers may have fetched it
    with pytest.raises(Conflict, match="rotation refused"):
        auth.keys.rotate(actor="t", channel="cli")
    clock.advance(auth.config.service.jwks_max_age)
    assert auth.keys.rotate(actor="t", channel="cli").kid == nxt.kid
    new_token = mint(auth, "2")
    jwks = served_jwks(auth)
    [newest] = auth.keys.by_state("next")
    assert [k["kid"] for k in jwks["keys"]] == [nxt.kid, newest.kid, first.kid]
    assert pyjwt_verify(old_token, jwks)["software_version"] == "1"  # retired, still served
    assert pyjwt_verify(new_token, jwks)["software_version"] == "2"
    # revocation: gone from the JWKS at once; historical keys say why
    auth.keys.revoke(first.kid, "compromised", actor="t", channel="cli")
    assert first.kid not in {k["kid"] for k in served_jwks(auth)["keys"]}
    with pytest.raises(InvalidSoftwareStatement, match="revoked"):
        auth.verify(old_token)
    doc = TestClient(create_app(auth)).get("/.well-known/historical-keys").text
    claims = pyjwt_verify(doc, served_jwks(auth))
    by_kid = {k["kid"]: k for k in claims["keys"]}
    assert by_kid[first.kid]["revoked"]["reason"] == "compromised"
    assert nxt.kid in by_kid and "revoked" not in by_kid[nxt.kid]


def test_a_key_the_backend_does_not_hold_is_never_activated(authority: Authority,
                                                             clock: FixedClock) -> None:
    """Point the next key's keyring entry at another backend key: the rotation is refused,
    forced or scheduled, and nothing changes."""
    auth = authority
    active = auth.keystore.active()
    [nxt] = auth.keys.by_state("next")
    ring_path = auth.config.keys_dir / "keyring.json"
    ring = json.loads(ring_path.read_text())
    for entry in ring["keys"]:
        if entry["kid"] == nxt.kid:
            entry["key_ref"] = active.ref
    ring_path.write_text(json.dumps(ring))
    before = ring_path.read_bytes()
    with pytest.raises(KeystoreError, match=f"refusing to activate key {nxt.kid}"):
        auth.keys.rotate(actor="t", channel="cli", force=True)
    clock.advance(10**6)
    auth.config = auth.keys.config = _with_rotation(auth)
    with pytest.raises(KeystoreError, match="refusing to activate"):
        auth.keys.maintain()
    assert ring_path.read_bytes() == before
    assert auth.keystore.active().kid == active.kid
    assert not auth.audit.events(type_prefix="key.activated")


def _with_rotation(auth: Authority) -> Any:
    from dataclasses import replace

    return replace(auth.config, rotation_period=60)


def test_no_private_key_material_outside_the_backend(authority: Authority) -> None:
    auth = authority
    mint(auth)
    kids = [k.kid for k in auth.keystore.keys()]
    files = sorted(p.name for p in auth.config.keys_dir.iterdir())
    if auth.config.key_backend == "file":
        assert {f"{kid}.pem" for kid in kids} <= set(files)
    else:
        # only the keyring and the log's own key (and its metadata): no statement key file
        assert not [f for f in files if f.endswith(".pem") and f != "log.pem"], files
    conn = sqlite3.connect(auth.config.database)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "PRIVATE KEY" not in dump and '"d":' not in dump
    ring = json.loads((auth.config.keys_dir / "keyring.json").read_text())
    for entry in ring["keys"]:
        assert set(entry["public_jwk"]) == set(PUBLIC_MEMBERS[entry["public_jwk"]["kty"]])


def test_signatures_are_in_jws_form(authority: Authority) -> None:
    """ECDSA signatures are fixed-size r || s whatever the backend answers (DER from KMS)."""
    for alg, size in (("ES256", 64), ("ES384", 96)):
        authority.keys.generate(alg, activate=True, actor="t", channel="cli")
        signature = b64url_decode(mint(authority).rsplit(".", 1)[1])
        assert len(signature) == size


# --- PKCS#11: the command line and the served issuer over a real SoftHSM2 token ------------------


def test_pkcs11_issuer_end_to_end_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`issuer init --key-backend pkcs11:...`, then a real `issuer serve`: mint, verify with PyJWT
    from the served JWKS, rotate (pre-publication respected), revoke, historical keys; the token
    holds every key, as `pkcs11-tool --list-objects` shows."""
    import subprocess
    import time

    import httpx

    from tests.conftest import installed_issuer
    from tests.service.test_served import clean_env, free_port, start

    uri = softhsm_token(tmp_path, monkeypatch)
    env = clean_env()
    home = tmp_path / "issuer"

    def issuer(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        config = ["--config", str(home / "issuer.toml")] if args[0] != "init" else []
        return subprocess.run([installed_issuer(), *args, *config], env=env, text=True,
                              capture_output=True, timeout=60, input=stdin)

    init = issuer("init", "--dir", str(home), "--issuer", ISS, "--key-backend", uri)
    assert init.returncode == 0, init.stderr
    assert "pkcs11 token 'issuer'" in init.stdout
    config = home / "issuer.toml"
    config.write_text(config.read_text().replace("jwks_max_age = 300", "jwks_max_age = 1"))
    keys = json.loads(issuer("keys", "list", "--json").stdout)
    listed = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so",
                             "--token-label", "issuer", "--login", "--pin", "246813579",
                             "--list-objects"], env=env, text=True, capture_output=True,
                            check=True).stdout
    for key in keys:  # a private and a public object per key, labelled with its kid
        assert listed.count(f'label:      {key["kid"]}') == 2, listed
    assert listed.count("Private Key Object") == len(keys) == 2
    assert {p.name for p in (home / "keys").glob("*.pem")} == {"log.pem"}

    port = free_port()
    process = start(home, env, port)
    try:
        url = f"http://127.0.0.1:{port}"
        minted = issuer("mint", "mcp-connector", "--set", "software_version=3.1", "--json")
        assert minted.returncode == 0, minted.stderr
        token = json.loads(minted.stdout)["software_statement"]
        assert pyjwt_verify(token, httpx.get(f"{url}/.well-known/jwks.json").json())[
            "software_version"] == "3.1"
        first = keys[0]["kid"]
        rotated = issuer("keys", "rotate", "--wait", "--json")
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["active"] == keys[1]["kid"]
        minted = issuer("mint", "mcp-connector", "--set", "software_version=3.2")
        jwks = httpx.get(f"{url}/.well-known/jwks.json").json()
        assert pyjwt_verify(minted.stdout.strip(), jwks)["software_version"] == "3.2"
        revoked = issuer("keys", "revoke", first, "--reason", "compromised")
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 10
        while first in {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()[
                "keys"]}:  # the service rechecks the keyring every second
            assert time.monotonic() < deadline, "revoked key still served"
            time.sleep(0.1)
        jwks = httpx.get(f"{url}/.well-known/jwks.json").json()
        history = pyjwt_verify(httpx.get(f"{url}/.well-known/historical-keys").text, jwks)
        assert {k["kid"]: k.get("revoked", {}).get("reason") for k in history["keys"]}[
            first] == "compromised"
        refused = issuer("verify", "-", "--jwks", f"{url}/.well-known/jwks.json", stdin=token)
        assert refused.returncode == 1 and "key" in refused.stderr, refused.stderr
    finally:
        process.kill()
        process.wait(timeout=10)
    assert issuer("audit", "verify").returncode == 0


def test_pkcs11_private_keys_are_sensitive_and_never_extractable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    uri = softhsm_token(tmp_path, monkeypatch)
    home = tmp_path / "issuer"
    init_issuer(home, issuer=ISS, alg="Ed25519", actor="t", env={}, key_backend=uri).close()
    lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
    try:
        with lib.get_token(token_label="issuer").open(user_pin="246813579") as session:
            privates = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            assert len(privates) == 2
            for key in privates:
                assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
                with pytest.raises(AttributeSensitive):
                    key[Attribute.VALUE]
    finally:
        lib.finalize()


@pytest.mark.parametrize(("change", "message"), [
    ("pin", "wrong PIN in the pin-source file"),
    ("token", "no token labelled 'elsewhere'"),
    ("module", "cannot load the module"),
    ("pin-mode", "lets group or others read it"),
])
def test_pkcs11_unusable_token_is_a_one_line_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    change: str, message: str) -> None:
    from click.testing import CliRunner

    from issuer.cli import cli

    uri = softhsm_token(tmp_path, monkeypatch)
    pin = tmp_path / "softhsm" / "pin"
    if change == "pin":
        pin.write_text("999999")
    elif change == "token":
        uri = uri.replace("token=issuer", "token=elsewhere")
    elif change == "module":
        uri = uri.replace("libsofthsm2.so", "missing.so")
    else:
        pin.chmod(0o644)
    result = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path / "issuer"),
                                      "--key-backend", uri])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "issuer" / "issuer.toml").exists()


@pytest.mark.parametrize(("uri", "message"), [
    ("pkcs11:token=a?module-path=/m.so", "pin-source is required"),
    ("pkcs11:token=a?module-path=/m.so&pin-value=1234", "unknown attribute(s) pin-value"),
    ("pkcs11:token=a?module-path=/m.so&pin-source=env:PIN", "pin-source must be file:"),
    ("awskms:profile=x", "region is required"),
    ("gcpkms:projects/p", "unknown scheme 'gcpkms'"),
    ("file:x", "takes no attributes"),
])
def test_malformed_key_uris_are_config_errors(tmp_path: Path, uri: str, message: str) -> None:
    from click.testing import CliRunner

    from issuer.cli import cli

    result = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path / "i"), "--key-backend", uri])
    assert result.exit_code in (1, 2) and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_a_backend_library_that_is_not_installed_says_which_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from issuer.core.errors import ConfigError
    from issuer.keys.backends import open_backend

    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "issuer.keys.backends.awskms", raising=False)
    with pytest.raises(ConfigError, match=r"software-statement-issuer\[awskms\]"):
        open_backend("awskms:region=us-east-1", keys_dir=tmp_path, base=tmp_path, env={})


def test_awskms_keys_are_tagged_with_their_kid(tmp_path: Path, moto_kms: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    uri = kms_uri(moto_kms, monkeypatch)
    auth = init_issuer(tmp_path / "issuer", issuer=ISS, alg="ES384", actor="t", env={},
                       key_backend=uri)
    try:
        client = boto3.client("kms", endpoint_url=moto_kms, region_name="us-east-1")
        for key in auth.keystore.keys():
            assert key.key_ref and key.key_ref.startswith("arn:aws:kms:us-east-1:")
            tags = client.list_resource_tags(KeyId=key.key_ref)["Tags"]
            assert {"TagKey": "kid", "TagValue": key.kid} in tags
            assert client.describe_key(KeyId=key.key_ref)["KeyMetadata"]["KeySpec"] == \
                "ECC_NIST_P384"
    finally:
        auth.close()
