"""The one JOSE path: compact JWS parsing, header rules and signature checks against a JWK Set.

Statements, status list tokens and the historical-keys document are all verified here, so the
rules hold for each: ``alg`` on a fixed allow-list (never ``none``, never HMAC: RFC 8725
section 3.1), no key carried in the token (``jwk``, ``jku``, ``x5u``, ``x5c``: RFC 8725 section
3.10), no unknown ``crit`` (RFC 7515 section 4.1.11), and a key whose type fits the ``alg``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
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


def strict_json(data: bytes | str, what: str) -> Any:
    """JSON as RFC 8259 defines it, nested at most MAX_JSON_DEPTH deep, or a clean refusal:
    NaN and Infinity are refused, and a document nested thousands deep is refused before
    anything recurses over it."""
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise invalid(f"{what} is not JSON (RFC 8259)") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


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
    _claims: dict[str, Any] | None = None

    def unverified_claims(self) -> dict[str, Any]:
        """The payload, only to route (which trusted issuer?). Trust nothing in it until the
        signature over this very segment has verified."""
        if self._claims is None:
            self._claims = _json_object(self.payload_segment, "payload")
        return dict(self._claims)


def parse_compact(token: object) -> Compact:
    """Shape and header checks: a header that carries its own key is refused right here,
    before anything is fetched."""
    header_segment, payload_segment, _ = _segments(token)
    header = _json_object(header_segment, "header")
    for name in KEY_CARRYING_HEADERS:
        if name in header:
            raise invalid(f"header carries '{name}'; keys are taken only from the issuer's JWKS")
    assert isinstance(token, str)
    return Compact(token.strip(), header, payload_segment)


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


_KEYS: dict[str, ECKey | RSAKey | OKPKey] = {}  # imported public keys, by their JWK text


def _import_public(jwk: Mapping[str, Any]) -> ECKey | RSAKey | OKPKey:
    # Private members are dropped (a verifier never needs them); so is "alg", which _fits has
    # already matched, so that the EdDSA alias verifies an "alg": "Ed25519" key.
    public = {k: v for k, v in jwk.items()
              if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "alg")}
    text = "|".join(str(public.get(m)) for m in ("kid", "kty", "crv", "x", "y", "n", "e"))
    key = _KEYS.get(text)
    if key is None:
        key = _import_checked(public, jwk)
        if len(_KEYS) >= 256:  # a bounded cache: forged key sets can't grow it
            _KEYS.clear()
        _KEYS[text] = key
    return key


def _import_checked(public: dict[str, Any], jwk: Mapping[str, Any]) -> ECKey | RSAKey | OKPKey:
    try:
        if public["kty"] == "EC":
            return ECKey.import_key(public)
        if public["kty"] == "RSA":
            key = RSAKey.import_key(public)
            if key.raw_value.key_size < 2048:  # RFC 7518 section 3.3
                raise invalid(f"RSA key {jwk.get('kid')!r} is shorter than 2048 bits")
            return key
        return OKPKey.import_key(public)
    except (JoseError, ValueError, KeyError, TypeError):
        raise invalid(f"key {jwk.get('kid')!r} in the issuer's JWKS is not a valid JWK") from None


def verify_signature(token: str | Compact, jwks: Mapping[str, Any],
                     algorithms: Collection[str] = DEFAULT_ALGORITHMS) -> bytes:
    """Check the header rules and the signature of a compact JWS against ``jwks``; the
    payload bytes. Statements, status lists and historical keys all go through here."""
    parsed = token if isinstance(token, Compact) else parse_compact(token)
    algorithms = [a for a in algorithms if a in _KEY_FOR_ALG]  # never none, never HMAC
    alg = _check_header(parsed.header, algorithms)
    return _verify_signature(parsed.token, jwks, parsed.header.get("kid"), alg)


def _verify_signature(token: str, jwks: Mapping[str, Any], kid: str | None, alg: str) -> bytes:
    for jwk in select_keys(jwks, kid, alg):
        key = _import_public(jwk)
        try:
            with warnings.catch_warnings():
                # joserfc warns that EdDSA is deprecated (RFC 9864); accepting it is our choice.
                warnings.simplefilter("ignore", SecurityWarning)
                return jws.deserialize_compact(token, key, algorithms=[alg]).payload
        except JoseError:
            continue
    raise invalid("signature does not verify" + (f" with key {kid!r}" if kid else ""))
