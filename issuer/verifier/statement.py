"""Verifying software statements the way an authorization server must (RFC 7591 section 3.1.1).

:func:`verify` raises :class:`~issuer.core.errors.InvalidSoftwareStatement` (or
:class:`~issuer.core.errors.UnapprovedSoftwareStatement` for an issuer that is not the expected one)
with a one-line reason; it never returns a failure value. It checks, in order:

1. the compact JWS shape and size;
2. the header: ``alg`` on a fixed allow-list (never ``none``, never HMAC: RFC 8725 section
   3.1), no key carried in the token (``jwk``, ``jku``, ``x5u``, ``x5c``: keys come only from
   the issuer's JWKS), no unknown ``crit``;
3. the signature, with the key of the header's ``kid`` from the issuer's JWKS, whose type and
   ``alg`` must fit the header's ``alg``;
4. ``iss`` equal to the expected issuer, ``exp`` and ``iat`` present, ``exp``, ``iat`` and
   ``nbf`` against the clock with a small leeway (RFC 7519 section 4.1);
5. the payload's client metadata against the RFC 7591 rules of :mod:`issuer.core.metadata`.
"""

from __future__ import annotations

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
    invalid,
    parse_compact,
    verify_signature,
)
from issuer.verifier.remote import StatusListClient, status_reference


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


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
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


def check_metadata(claims: Mapping[str, Any]) -> None:
    """The payload's client metadata must follow RFC 7591 section 2 like a template's."""
    found = metadata.errors(metadata.check_claims(claims, statement=True))
    if found:
        first = found[0]
        raise invalid(f"claim '{first.claim}': {first.message} ({first.rule})")


def check_status(claims: Mapping[str, Any], client: StatusListClient, *,
                 jwks: Mapping[str, Any], issuer: str) -> None:
    """Refuse a statement its issuer revoked or suspended (draft-ietf-oauth-status-list s8)."""
    ref = status_reference(claims)
    if ref is None:
        return
    value = client.status(ref[0], ref[1], jwks=jwks, issuer=issuer)
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
) -> VerifiedStatement:
    """Verify ``token`` as a statement of ``issuer`` signed by a key of ``jwks``.

    With ``status``, a statement that carries a Token Status List reference is also checked
    against that list (fetched, verified with ``jwks`` and cached for its ``ttl``): a revoked or
    suspended statement is refused. Without it the status is not checked: say so explicitly.

    Raises InvalidSoftwareStatement, or UnapprovedSoftwareStatement when it was issued by
    someone other than ``issuer``.
    """
    parsed = token if isinstance(token, Compact) else parse_compact(token)
    verify_signature(parsed, jwks, algorithms)
    header = parsed.header
    alg, kid = header["alg"], header.get("kid")
    # The signature covers exactly the payload segment these claims were decoded from.
    claims = parsed.unverified_claims()
    if claims.get("iss") != issuer:
        raise UnapprovedSoftwareStatement(
            f"software statement rejected: iss {claims.get('iss')!r} is not the expected "
            f"issuer {issuer!r}")
    now = (clock or SystemClock()).now()
    check_times(claims, now, leeway, require_exp)
    check_metadata(claims)
    if status is not None:
        check_status(claims, status, jwks=jwks, issuer=issuer)
    return VerifiedStatement(header=header, claims=claims, kid=kid, alg=alg,
                             digest=statement_digest(parsed.token))
