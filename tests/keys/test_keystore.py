"""The keystore: algorithms, RFC 7638 kids, file modes, passphrases, the public JWKS."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from issuer.core.authority import Authority
from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import KeystoreError
from issuer.keys.keystore import Keystore
from tests.conftest import Cli, vector

ALGS = ["ES256", "ES384", "PS256", "RS256", "Ed25519"]
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_thumbprint_matches_rfc7638_section_3_1() -> None:
    case = vector("jwk_thumbprint.json")["rfc7638_section_3_1"]
    assert jwk_thumbprint(case["jwk"]) == case["thumbprint_base64url"]


def test_thumbprint_matches_rfc8037_appendix_a3() -> None:
    case = vector("jwk_thumbprint.json")["rfc8037_appendix_a"]
    expected = case["a3_thumbprint"]["thumbprint_base64url"]
    assert jwk_thumbprint(case["a2_public_jwk"]) == expected
    assert jwk_thumbprint(case["a1_private_jwk"]) == expected  # private members don't count


def test_thumbprint_of_ec_key() -> None:
    case = vector("jwk_thumbprint.json")["extra_not_from_an_rfc"]["ec_p256_key_from_rfc7517_a1"]
    assert jwk_thumbprint(case["jwk"]) == case["thumbprint_base64url"]


@pytest.mark.parametrize("alg", ALGS)
def test_generate_each_algorithm(tmp_path: Path, alg: str) -> None:
    store = Keystore(tmp_path / "keys")
    key = store.generate(alg, state="active", now=1, rsa_bits=2048)
    assert key.alg == alg
    assert key.kid == jwk_thumbprint(key.public_jwk)
    pem = tmp_path / "keys" / f"{key.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    # PKCS#8 ("PRIVATE KEY", not the traditional "EC/RSA PRIVATE KEY"), unencrypted
    label = pem.read_bytes().split(b"\n", 1)[0]
    assert label == b"-----" + b" ".join([b"BEGIN", b"PRIVATE", b"KEY"]) + b"-----"
    assert serialization.load_pem_private_key(pem.read_bytes(), password=None)
    jwk = store.keys()[0].jwk()
    assert jwk["kid"] == key.kid and jwk["alg"] == alg and jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & jwk.keys()
    signer = store.signer()
    token = signer.sign(b"{}")
    assert token.count(".") == 2 and repr(signer).startswith("Signer(")


def test_eddsa_is_an_alias_of_ed25519(tmp_path: Path) -> None:
    assert Keystore(tmp_path).generate("EdDSA", state="active", now=1).alg == "Ed25519"


def test_rsa_below_2048_bits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="at least 2048"):
        Keystore(tmp_path).generate("RS256", state="active", now=1, rsa_bits=1024)


def test_keyring_and_directory_hold_no_secret(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys")
    store.generate("ES256", state="active", now=1)
    ring = json.loads((tmp_path / "keys" / "keyring.json").read_text())
    for entry in ring["keys"]:
        assert not PRIVATE_MEMBERS & entry["public_jwk"].keys()
    assert stat.S_IMODE((tmp_path / "keys" / "keyring.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    store = Keystore(tmp_path / "keys")
    key = store.generate("ES256", state="active", now=1)
    path = tmp_path / "keys" / f"{key.kid}.pem"
    os.chmod(path, mode)
    with pytest.raises(KeystoreError, match=f"mode {mode:04o} lets group or others read it"):
        Keystore(tmp_path / "keys").signer()


def test_passphrase_encrypts_and_is_needed(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys", passphrase="correct horse battery staple")
    key = store.generate("ES256", state="active", now=1)
    pem = (tmp_path / "keys" / f"{key.kid}.pem").read_bytes()
    assert pem.split(b"\n", 1)[0].endswith(b" ".join([b"ENCRYPTED", b"PRIVATE", b"KEY-----"]))
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    assert store.signer().sign(b"{}")
    with pytest.raises(KeystoreError, match="is encrypted; set ISSUER_KEY_PASSPHRASE or ISSUER_KEY_PASSPHRASE_FILE"):
        Keystore(tmp_path / "keys").signer()
    with pytest.raises(KeystoreError, match="wrong ISSUER_KEY_PASSPHRASE"):
        Keystore(tmp_path / "keys", passphrase="wrong but long enough").signer()


def test_swapped_key_file_is_refused(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys")
    a = store.generate("ES256", state="active", now=1)
    b = store.generate("ES256", state="next", now=1)
    pa, pb = (tmp_path / "keys" / f"{k.kid}.pem" for k in (a, b))
    data = pb.read_bytes()
    pa.write_bytes(data)
    with pytest.raises(KeystoreError, match="does not hold the key"):
        Keystore(tmp_path / "keys").signer()


def test_damaged_keyring_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "keyring.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="damaged"):
        Keystore(tmp_path).keys()


def test_no_active_key(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="no active signing key"):
        Keystore(tmp_path).active()


def test_exactly_one_active_key(auth: Authority) -> None:
    first = auth.keystore.active()
    [prepublished] = auth.keys.by_state("next")  # `issuer init` pre-publishes the next key
    assert {k["kid"] for k in auth.jwks()["keys"]} == {first.kid, prepublished.kid}
    another = auth.keys.generate("Ed25519", actor="t", channel="cli")
    assert another.state == "next"  # published, not signing
    assert auth.keystore.active().kid == first.kid
    # one next key at a time: the new one supersedes the one that was waiting
    assert auth.keystore.get(prepublished.kid).state == "revoked"
    assert auth.keystore.get(prepublished.kid).revocation_reason == "superseded"
    newest = auth.keys.generate("ES384", activate=True, actor="t", channel="cli")
    states = {k.kid: k.state for k in auth.keystore.keys()}
    assert states == {first.kid: "retired", prepublished.kid: "revoked", another.kid: "next",
                      newest.kid: "active"}
    events = [e.type for e in auth.audit.events(type_prefix="key.")]
    assert events == ["key.generated"] * 3 + ["key.revoked", "key.generated", "key.retired",
                                              "key.activated"]
    assert auth.audit.events(type_prefix="key.activated")[0].data["forced"] is True


def test_keys_cli(cli: Cli) -> None:
    generated = cli("keys", "generate", "--alg", "PS256", "--rsa-bits", "2048", "--json")
    assert generated.exit_code == 0, generated.stderr
    info = json.loads(generated.stdout)
    assert info["alg"] == "PS256" and info["state"] == "next"
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["state"] for k in listed] == ["active", "revoked", "next"]
    assert all(k["statements"] == 0 for k in listed)
    table = cli("keys", "list").stdout
    assert "STATE" in table and info["kid"] in table
    jwks = json.loads(cli("jwks").stdout)
    assert len(jwks["keys"]) == 2
    assert all(not PRIVATE_MEMBERS & k.keys() for k in jwks["keys"])
    assert "BEGIN" not in cli("jwks").stdout + cli("keys", "list", "--json").stdout


def test_keys_cli_rejects_unknown_algorithms(cli: Cli) -> None:
    for alg in ("HS256", "none", "ES512"):
        result = cli("keys", "generate", "--alg", alg)
        assert result.exit_code == 2 and "Invalid value for '--alg'" in result.stderr
