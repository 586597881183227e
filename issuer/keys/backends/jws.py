"""What every backend shares: JWS signature formats and public JWKs, in one place.

Backends answer in their own formats: cryptography and AWS KMS give ECDSA signatures as DER
(RFC 3279 ``Ecdsa-Sig-Value``), PKCS#11 ``CKM_ECDSA`` and GCP/Azure give raw ``r || s``, Vault
transit prefixes ``vault:v1:``. JWS wants ``r || s`` with each half padded to the curve size
(RFC 7518 section 3.4); :func:`jws_signature` is the only conversion.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc.jwk import ECKey, OKPKey, RSAKey

from issuer.core.errors import KeystoreError

ALGS = ("ES256", "ES384", "PS256", "RS256", "Ed25519")
MIN_RSA_BITS = 2048
#: The public members of each key type (RFC 7518 section 6, RFC 8037 section 2): all a JWKS
#: may carry of a key, whatever the keyring holds.
PUBLIC_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                  "OKP": ("crv", "kty", "x")}
#: ECDSA curve and the size of r and s in bytes (RFC 7518 section 3.4).
EC_CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48)}
_HASHES = {"ES256": hashlib.sha256, "ES384": hashlib.sha384, "RS256": hashlib.sha256,
           "PS256": hashlib.sha256}

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def digest(alg: str, data: bytes) -> bytes:
    """The hash a backend signs when it is handed a digest (PKCS#11 ``CKM_ECDSA``, KMS
    ``MessageType=DIGEST``)."""
    return _HASHES[alg](data).digest()


def jws_signature(alg: str, signature: bytes, *, der: bool) -> bytes:
    """A backend's signature in JWS form: ECDSA DER (``der``) becomes fixed-size ``r || s``;
    raw ``r || s`` is checked for size; RSA and Ed25519 signatures are the same in both."""
    if alg not in EC_CURVES:
        return signature
    size = EC_CURVES[alg][1]
    if der:
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            raise KeystoreError(f"the key backend returned a malformed {alg} signature") from None
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if len(signature) != 2 * size:
        raise KeystoreError(f"the key backend returned a {len(signature)}-byte {alg} signature, "
                            f"not {2 * size}")
    return signature


def public_only(jwk: dict[str, Any]) -> dict[str, Any]:
    """The public members of ``jwk`` and nothing else, sorted."""
    members = PUBLIC_MEMBERS.get(str(jwk.get("kty")), ())
    return {name: jwk[name] for name in members if name in jwk}


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The public JWK of a public key, members sorted."""
    imported: ECKey | RSAKey | OKPKey
    if isinstance(key, ec.EllipticCurvePublicKey):
        imported = ECKey.import_key(key)
    elif isinstance(key, rsa.RSAPublicKey):
        imported = RSAKey.import_key(key)
    else:
        imported = OKPKey.import_key(key)
    return public_only(imported.as_dict(private=False))


def _public_key(jwk: dict[str, Any]) -> PublicKey:
    kinds: dict[str, type[ECKey] | type[RSAKey] | type[OKPKey]] = {
        "EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}
    kind = kinds.get(str(jwk.get("kty")))
    if kind is None:
        raise KeystoreError(f"unsupported key type {jwk.get('kty')!r}")
    try:
        key: Any = kind.import_key(public_only(jwk)).get_op_key("verify")
    except Exception:  # joserfc raises several types for a malformed JWK
        raise KeystoreError("malformed public JWK") from None
    return key  # type: ignore[no-any-return]


def alg_fits(alg: str, jwk: dict[str, Any]) -> bool:
    """Whether a key with public ``jwk`` may sign ``alg``."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if alg in EC_CURVES:
        return kty == "EC" and crv == EC_CURVES[alg][0]
    if alg in ("RS256", "PS256"):
        key = _public_key(jwk) if kty == "RSA" else None
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    return alg == "Ed25519" and kty == "OKP" and crv == "Ed25519"


def verify_signature(alg: str, jwk: dict[str, Any], data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (JWS form) over ``data`` verifies with the public ``jwk``."""
    key = _public_key(jwk)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            key.verify(der, data, ec.ECDSA(_hash(alg)))
        elif alg == "PS256":
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(_hash(alg)),
                                                    salt_length=32), _hash(alg))
        else:
            key.verify(signature, data, padding.PKCS1v15(), _hash(alg))
    except (InvalidSignature, ValueError):
        return False
    return True


def _hash(alg: str) -> hashes.HashAlgorithm:
    return hashes.SHA384() if alg == "ES384" else hashes.SHA256()
