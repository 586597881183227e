"""Verifying software statements the way an authorization server must (RFC 7591 section 3.1.1).

:func:`verify` raises :class:`~issuer.core.errors.InvalidSoftwareStatement` (or
:class:`~issuer.core.errors.UnapprovedSoftwareStatement` for an issuer that is not the expected one)
with a one-line reason; it never returns a failure value. It checks, in order:

1. the compact JWS shape and size, and JSON that is JSON (no NaN, no Infinity, no hostile
   nesting: RFC 8259);
2. the kind of token (RFC 8725 sections 3.11-3.12): ``typ`` absent, ``JWT`` or
   ``application/jwt``, no ``cty``, and none of the claims of the other JWTs an issuer signs
   (``status_list``, ``keys``, ``ttl``): a status list token or a historical-keys document is
   never a statement, even re-signed under ``typ: JWT``;
3. the header: ``alg`` on a fixed allow-list (never ``none``, never HMAC: RFC 8725 section
   3.1), no key carried in the token (``jwk``, ``jku``, ``x5u``, ``x5c``: keys come only from
   the issuer's JWKS), no unknown ``crit``;
4. the signature, with the key of the header's ``kid`` from the issuer's JWKS, whose type and
   ``alg`` must fit the header's ``alg``;
5. ``iss`` equal to the expected issuer; ``aud``, when present, naming this verifier (RFC 7519
   section 4.1.3); ``exp`` and ``iat`` present, finite, and with ``nbf`` against the clock
   with a small leeway (RFC 7519 section 4.1);
6. the payload's client metadata against the RFC 7591 rules of :mod:`issuer.core.metadata`;
7. last, and only when asked, its Token Status List entry (draft-ietf-oauth-status-list
   section 8: no status processing for a token that is otherwise invalid).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from issuer.core import metadata
from issuer.core.clock import Clock, SystemClock
from issuer.core.encoding import statement_digest
from issuer.core.errors import UnapprovedSoftwareStatement
from issuer.status import statuslist
from issuer.verifier.jose import (
    DEFAULT_ALGORITHMS,
    DEFAULT_LEEWAY,
    Compact,
    check_signature,
    invalid,
    parse_compact,
)
from issuer.verifier.remote import StatusListClient, rebase, same_origin, status_reference

#: ``typ`` values of a statement (RFC 7519 section 5.1: "JWT", compared case-insensitively,
#: with or without the "application/" prefix: RFC 7515 section 4.1.9).
STATEMENT_TYPES = frozenset({"jwt", "application/jwt"})
#: Claims of the other JWTs an issuer signs: a Token Status List (``status_list``, ``ttl``:
#: draft-ietf-oauth-status-list section 5.1) and a JWK Set document (``keys``: RFC 7517
#: section 5). A payload with any of them is that kind of token, whatever its header says.
OTHER_KIND_CLAIMS = ("status_list", "keys", "ttl")


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose signature, issuer, times and metadata all checked out."""

    header: dict[str, Any]
    claims: dict[str, Any]
    kid: str | None
    alg: str
    digest: str

    @property
    def issuer(self) -> str:
        return str(self.claims["iss"])


def check_kind(parsed: Compact) -> None:
    """Only a statement verifies as a statement (RFC 8725 sections 3.11-3.12): by its header
    and by its claims, so that neither a token of another kind re-signed under ``typ: JWT`` nor
    a header edited back to ``JWT`` (which breaks the signature anyway) passes."""
    typ = parsed.header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in STATEMENT_TYPES):
        raise invalid(f"typ {typ!r} is not a software statement (a statement's typ is JWT or "
                      "absent: RFC 8725 section 3.11)")
    if "cty" in parsed.header:
        raise invalid("header has 'cty': a nested or non-JWT payload is not a software "
                      "statement (RFC 7519 section 5.2)")
    claims = parsed.unverified_claims()
    for name in OTHER_KIND_CLAIMS:
        if name in claims:
            raise invalid(f"payload carries '{name}': it is another kind of token (a status "
                          "list or a key set), not a software statement (RFC 8725 section 3.12)")
    parsed.kind_checked = True


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise invalid(f"claim '{name}' is not a NumericDate (RFC 7519 section 2)")
    return float(value)


def check_times(claims: Mapping[str, Any], now: float, leeway: int,
                require_exp: bool = True) -> None:
    """``iat`` (and by default ``exp``) required; ``exp``, ``iat``, ``nbf`` against the clock."""
    for name in ("exp", "iat") if require_exp else ("iat",):
        if name not in claims:
            raise invalid(f"claim '{name}' is missing")
    if "exp" in claims and now >= _number(claims, "exp") + leeway:
        raise invalid(f"expired at {int(_number(claims, 'exp'))} (now {int(now)})")
    if _number(claims, "iat") > now + leeway:
        raise invalid(f"issued in the future (iat {int(_number(claims, 'iat'))}, now {int(now)})")
    if "nbf" in claims and _number(claims, "nbf") > now + leeway:
        raise invalid(f"not valid before {int(_number(claims, 'nbf'))} (now {int(now)})")


def check_audience(claims: Mapping[str, Any], audience: str | None) -> None:
    """A statement with ``aud`` verifies only where one of its values is this verifier's
    audience (RFC 7519 section 4.1.3: "MUST be rejected" otherwise)."""
    if "aud" not in claims:
        return
    aud = claims["aud"]
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise invalid("claim 'aud' is neither a string nor an array of strings "
                      "(RFC 7519 section 4.1.3)")
    if audience is None:
        raise invalid(f"claim 'aud' {aud!r} restricts the statement to other recipients and "
                      "this verifier has no audience configured (RFC 7519 section 4.1.3)")
    if audience not in values:
        raise invalid(f"claim 'aud' {aud!r} does not name this server ({audience!r}; RFC 7519 "
                      "section 4.1.3)")


def check_metadata(claims: Mapping[str, Any]) -> None:
    """The payload's client metadata must follow RFC 7591 section 2 like a template's."""
    found = metadata.errors(metadata.check_claims(claims, statement=True))
    if found:
        first = found[0]
        raise invalid(f"claim '{first.claim}': {first.message} ({first.rule})")


#: Payload segments whose metadata passed :func:`check_metadata`. One statement is presented
#: by every installation of its client, and the rules are a pure function of the payload
#: bytes, so a payload that passed once passes again. Only payloads whose signature verified
#: get here, and the set is bounded.
_METADATA_PASSED: set[str] = set()
_METADATA_PASSED_MAX = 1024


def _check_metadata_once(parsed: Compact, claims: Mapping[str, Any]) -> None:
    if parsed.payload_segment in _METADATA_PASSED:
        return
    check_metadata(claims)
    if len(_METADATA_PASSED) >= _METADATA_PASSED_MAX:
        _METADATA_PASSED.clear()
    _METADATA_PASSED.add(parsed.payload_segment)


def check_status(claims: Mapping[str, Any], client: StatusListClient, *,
                 jwks: Mapping[str, Any], issuer: str, base_url: str | None = None) -> None:
    """Refuse a statement its issuer revoked or suspended (draft-ietf-oauth-status-list s8)."""
    ref = status_reference(claims)
    if ref is None:
        return
    if not same_origin(ref[0], issuer):
        # A statement must not send the verifier to fetch from an arbitrary host (or have a
        # third party answer for the issuer): its list lives where its issuer is.
        raise invalid(f"status list {ref[0]} is not on the origin of its issuer {issuer}")
    value = client.status(ref[0], ref[1], jwks=jwks, issuer=issuer,
                          fetch_url=rebase(ref[0], issuer, base_url))
    if value == statuslist.INVALID:
        raise invalid(f"revoked by its issuer (status list {ref[0]}, index {ref[1]})")
    if value == statuslist.SUSPENDED:
        raise invalid(f"suspended by its issuer (status list {ref[0]}, index {ref[1]})")
    if value != statuslist.VALID:
        raise invalid(f"status {value:#04x} in status list {ref[0]} is not VALID")


def verify(
    token: str | Compact,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    clock: Clock | None = None,
    leeway: int = DEFAULT_LEEWAY,
    status: StatusListClient | None = None,
    require_exp: bool = True,
    audience: str | None = None,
) -> VerifiedStatement:
    """Verify ``token`` as a statement of ``issuer`` signed by a key of ``jwks``.

    With ``status``, a statement that carries a Token Status List reference is also checked
    against that list (fetched, verified with ``jwks`` and cached for its ``ttl``): a revoked or
    suspended statement is refused. Without it the status is not checked: say so explicitly.
    ``audience`` is this verifier's own identifier, needed only for statements with ``aud``.

    Raises InvalidSoftwareStatement, or UnapprovedSoftwareStatement when it was issued by
    someone other than ``issuer``.
    """
    parsed = token if isinstance(token, Compact) else parse_compact(token)
    if not parsed.kind_checked:
        check_kind(parsed)
    check_signature(parsed, jwks, algorithms)
    header = parsed.header
    alg, kid = header["alg"], header.get("kid")
    # The signature covers exactly the payload segment these claims were decoded from.
    claims = parsed.unverified_claims()
    if claims.get("iss") != issuer:
        raise UnapprovedSoftwareStatement(
            f"software statement rejected: iss {claims.get('iss')!r} is not the expected "
            f"issuer {issuer!r}")
    check_audience(claims, audience)
    now = (clock or SystemClock()).now()
    check_times(claims, now, leeway, require_exp)
    _check_metadata_once(parsed, claims)
    if status is not None:
        check_status(claims, status, jwks=jwks, issuer=issuer)
    return VerifiedStatement(header=header, claims=claims, kid=kid, alg=alg,
                             digest=statement_digest(parsed.token))
