"""The one JOSE path: compact JWS parsing, header rules and signature checks against a JWK Set.

Statements, status list tokens and the historical-keys document are all verified here, so the
rules hold for each: ``alg`` on a fixed allow-list (never ``none``, never HMAC: RFC 8725
section 3.1), no key carried in the token (``jwk``, ``jku``, ``x5u``, ``x5c``: RFC 8725 section
3.10), no unknown ``crit`` (RFC 7515 section 4.1.11), and a key whose type fits the ``alg``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from issuer.core.encoding import b64url_decode
from issuer.core.errors import InvalidSoftwareStatement

#: Algorithms a statement may be signed with. ``EdDSA`` (RFC 8037) is the deprecated
#: polymorphic name of ``Ed25519`` (RFC 9864 section 2.2), still emitted by older signers.
DEFAULT_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "Ed25519", "EdDSA")
MAX_TOKEN_BYTES = 64 * 1024
DEFAULT_LEEWAY = 60
#: Deepest JSON nesting a header or payload may have. Client metadata nests three levels
#: (``jwks.keys[].x``); anything far deeper is hostile and would exhaust the recursion of
#: every JSON consumer downstream (the AS's audit log, Authlib, a database driver).
MAX_JSON_DEPTH = 16
#: Header members that would let a token name its own verification key (RFC 8725 s3.10).
KEY_CARRYING_HEADERS = ("jwk", "jku", "x5u", "x5c")
#: Key type (and curve) each algorithm needs (RFC 7518 section 3, RFC 8037 section 3.1).
_KEY_FOR_ALG = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "RS256": ("RSA", None),
    "PS256": ("RSA", None), "Ed25519": ("OKP", "Ed25519"), "EdDSA": ("OKP", "Ed25519"),
}
_SAME_ALG = {"EdDSA": "Ed25519"}
#: ECDSA: the hash, and the size of each of r and s in the JWS signature (RFC 7518 s3.4).
_ECDSA = {"ES256": (ec.ECDSA(hashes.SHA256()), 32), "ES384": (ec.ECDSA(hashes.SHA384()), 48)}
#: RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a salt as long as the hash (RFC 7518 s3.5).
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def invalid(reason: str) -> InvalidSoftwareStatement:
    return InvalidSoftwareStatement(f"software statement rejected: {reason}")


def _segments(token: object) -> tuple[str, str, str]:
    if not isinstance(token, str):
        raise invalid("not a string")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise invalid(f"longer than {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        raise invalid("not a compact JWS (non-ASCII characters)")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise invalid("not a compact JWS (header.payload.signature)")
    return parts[0], parts[1], parts[2]


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259 section 6); Python accepts them.
    raise ValueError(f"{name} is not a JSON number")


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def strict_json(data: bytes, what: str) -> Any:
    """JSON as RFC 8259 defines it, nested at most MAX_JSON_DEPTH deep, or a clean refusal:
    NaN and Infinity are refused, and a document nested thousands deep is refused before
    anything recurses over it."""
    try:
        # JSON in a JWS is UTF-8 (RFC 7519 section 7.2, RFC 8259 section 8.1).
        value = _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise invalid(f"{what} is not JSON (RFC 8259)") from None
    if _brackets(data) > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _brackets(data: bytes) -> int:
    """How many arrays and objects ``data`` could open at most: a bound on its depth that
    costs far less than walking the parsed value (a statement has a handful)."""
    return data.count(b"[") + data.count(b"{")


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        data = b64url_decode(segment)
    except ValueError:
        raise invalid(f"{what} is not base64url-encoded JSON") from None
    value = strict_json(data, what)
    if not isinstance(value, dict):
        raise invalid(f"{what} is not a JSON object")
    return value


@dataclass
class Compact:
    """A compact JWS taken apart once; nothing in it is verified yet."""

    token: str
    header: dict[str, Any]
    payload_segment: str
    signature_segment: str = ""
    _claims: dict[str, Any] | None = None
    #: Set by ``check_kind`` once it has passed, so that a caller that refuses other kinds of
    #: token before fetching anything does not pay for the check again inside ``verify``.
    kind_checked: bool = False

    @property
    def signing_input(self) -> bytes:
        """What the signature covers: ``header.payload`` as sent (RFC 7515 section 5.2)."""
        return self.token[:self.token.rindex(".")].encode("ascii")

    def unverified_claims(self) -> dict[str, Any]:
        """The payload, only to route (which trusted issuer?). Trust nothing in it until the
        signature over this very segment has verified."""
        if self._claims is None:
            self._claims = _json_object(self.payload_segment, "payload")
        return dict(self._claims)


def parse_compact(token: object) -> Compact:
    """Shape and header checks: a header that carries its own key is refused right here,
    before anything is fetched."""
    header_segment, payload_segment, signature_segment = _segments(token)
    header = _json_object(header_segment, "header")
    for name in KEY_CARRYING_HEADERS:
        if name in header:
            raise invalid(f"header carries '{name}'; keys are taken only from the issuer's JWKS")
    assert isinstance(token, str)
    return Compact(token.strip(), header, payload_segment, signature_segment)


def read_header(token: object) -> dict[str, Any]:
    """The unverified JOSE header, for routing (which issuer, which key)."""
    return parse_compact(token).header


def _check_header(header: Mapping[str, Any], algorithms: Collection[str]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        allowed = ", ".join(algorithms)
        raise invalid(f"alg {alg!r} is not allowed (allowed: {allowed})")
    if "crit" in header:
        raise invalid("header has critical extensions this verifier does not understand "
                      "(RFC 7515 section 4.1.11)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise invalid("kid is not a string")
    return alg


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    kty, crv = _KEY_FOR_ALG[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    if jwk.get("use") not in (None, "sig"):
        return False
    declared = jwk.get("alg")
    return declared is None or _SAME_ALG.get(declared, declared) == _SAME_ALG.get(alg, alg)


def select_keys(jwks: Mapping[str, Any], kid: str | None, alg: str) -> list[dict[str, Any]]:
    """Candidate JWKs: the one with ``kid``, or every key that fits ``alg`` when there is none."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise invalid("the issuer's JWKS has no 'keys' array")
    keys = [k for k in keys if isinstance(k, dict)]
    if kid is not None:
        matching = [k for k in keys if k.get("kid") == kid]
        if not matching:
            raise invalid(f"unknown key: kid {kid!r} is not in the issuer's JWKS")
        usable = [k for k in matching if _fits(k, alg)]
        if not usable:
            raise invalid(f"key {kid!r} can't verify alg {alg}")
        return usable
    usable = [k for k in keys if _fits(k, alg)]
    if not usable:
        raise invalid(f"no key in the issuer's JWKS fits alg {alg}")
    return usable


_KEYS: dict[str, PublicKey] = {}  # imported public keys, by their JWK members


def _import_public(jwk: Mapping[str, Any]) -> PublicKey:
    # Private members are never read (a verifier never needs them); "alg" has been matched by
    # _fits already, so that the EdDSA alias verifies an "alg": "Ed25519" key.
    text = "|".join(str(jwk.get(m)) for m in ("kid", "kty", "crv", "x", "y", "n", "e"))
    key = _KEYS.get(text)
    if key is None:
        key = _import_checked(jwk)
        if len(_KEYS) >= 256:  # a bounded cache: forged key sets can't grow it
            _KEYS.clear()
        _KEYS[text] = key
    return key


def _import_checked(jwk: Mapping[str, Any]) -> PublicKey:
    public = {k: v for k, v in jwk.items()
              if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "alg")}
    try:
        imported: ECKey | RSAKey | OKPKey
        if public["kty"] == "EC":
            imported = ECKey.import_key(public)
        elif public["kty"] == "RSA":
            imported = RSAKey.import_key(public)
        else:
            imported = OKPKey.import_key(public)
        key: PublicKey = imported.get_op_key("verify")  # type: ignore[assignment]
    except (JoseError, ValueError, KeyError, TypeError):
        raise invalid(f"key {jwk.get('kid')!r} in the issuer's JWKS is not a valid JWK") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:  # RFC 7518 section 3.3
        raise invalid(f"RSA key {jwk.get('kid')!r} is shorter than 2048 bits")
    return key


def signature_valid(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """The JWS signature check itself (RFC 7515 section 5.2, RFC 7518 section 3), done with
    ``cryptography`` directly over the one parse of the token; ``_fits`` has matched the
    key's type to ``alg`` already."""
    try:
        if alg in _ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            scheme, half = _ECDSA[alg]
            if len(signature) != 2 * half:  # r || s, each exactly the curve size
                return False
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            key.verify(der, signing_input, scheme)
        elif alg == "PS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, _PSS, hashes.SHA256())
        elif alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg in ("Ed25519", "EdDSA") and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(token: str | Compact, jwks: Mapping[str, Any],
                     algorithms: Collection[str] = DEFAULT_ALGORITHMS) -> bytes:
    """Check the header rules and the signature of a compact JWS against ``jwks``; the
    payload bytes. Statements, status lists and historical keys all go through here."""
    parsed = token if isinstance(token, Compact) else parse_compact(token)
    check_signature(parsed, jwks, algorithms)
    return b64url_decode(parsed.payload_segment)


def check_signature(parsed: Compact, jwks: Mapping[str, Any],
                    algorithms: Collection[str] = DEFAULT_ALGORITHMS) -> None:
    """:func:`verify_signature` for a caller that has the payload decoded already."""
    algorithms = [a for a in algorithms if a in _KEY_FOR_ALG]  # never none, never HMAC
    alg = _check_header(parsed.header, algorithms)
    kid = parsed.header.get("kid")
    candidates = select_keys(jwks, kid, alg)
    try:
        signature = b64url_decode(parsed.signature_segment)
    except ValueError:
        raise invalid("signature is not base64url") from None
    signing_input = parsed.signing_input
    for jwk in candidates:
        if signature_valid(alg, _import_public(jwk), signing_input, signature):
            return
    raise invalid("signature does not verify" + (f" with key {kid!r}" if kid else ""))
