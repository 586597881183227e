"""The verifier toolkit for authorization servers: trusted issuers, remote keys, status.

::

    verifier = StatementVerifier(trusted=[
        TrustedIssuer(issuer="https://connectors.example.com",
                      jwks_uri="https://connectors.example.com/.well-known/jwks.json"),
    ])
    statement = verifier.verify(token)   # raises InvalidSoftwareStatement / Unapproved...

What it guarantees (docs/verifying.md):

- only issuers on the trusted list are approved; any other ``iss`` is
  ``unapproved_software_statement`` (RFC 7591 section 3.2.2), and nothing is fetched for it;
- keys come only from the trusted issuer's configured JWKS (inline or ``jwks_uri``), never from
  the statement or its header (``jwk``, ``jku``, ``x5u``, ``x5c`` are refused);
- the algorithm allow-list is the issuer's, never the token's; ``none`` and HMAC never verify;
- only statements verify: the issuer's status list tokens, historical-keys document or any other
  JWT kind are refused by ``typ`` and by their claims (RFC 8725 sections 3.11-3.12);
- signature, ``iss``, ``aud`` (against ``audience``), ``exp``, ``iat``, ``nbf``, an optional
  maximum age, the RFC 7591 metadata rules and, last, when the statement carries one, its Token
  Status List entry (on the issuer's origin only);
- a statement signed by a revoked key says so (from the issuer's historical keys), instead of
  only "unknown key".
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from issuer.core.clock import Clock, SystemClock, rfc3339
from issuer.core.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement
from issuer.core.metadata import is_loopback_host
from issuer.verifier.jose import (
    DEFAULT_ALGORITHMS,
    DEFAULT_LEEWAY,
    MAX_TOKEN_BYTES,
    invalid,
    parse_compact,
)
from issuer.verifier.remote import HistoricalKeysClient, RemoteJwks, StatusListClient, rebase
from issuer.verifier.statement import VerifiedStatement, check_kind, check_status, verify


@dataclass(frozen=True)
class TrustedIssuer:
    """One issuer whose statements this server accepts, and how to check them."""

    issuer: str
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    #: Refuse statements issued longer ago than this many seconds (None: only ``exp`` counts).
    max_age: int | None = None
    require_exp: bool = True
    check_status: bool = True
    #: Where the issuer's signed historical keys are; default ``<issuer>/.well-known/...``.
    historical_keys_uri: str | None = None
    #: Fetch what lives on the issuer's origin (its JWKS, historical keys and status lists)
    #: from this base URL instead: a staging copy of the issuer that signs with the same
    #: ``iss`` but is served elsewhere (``https://staging.internal:8443``).
    base_url: str | None = None

    def __post_init__(self) -> None:
        if (self.jwks_uri is None) == (self.jwks is None):
            raise ValueError(f"trusted issuer {self.issuer}: give exactly one of jwks_uri, jwks")
        for uri in (self.jwks_uri, self.historical_keys_uri, self.base_url):
            if uri is not None and not _fetchable(uri):
                raise ValueError(f"{uri}: JWKS URLs must use https (http only on localhost)")
        unknown = set(self.algorithms) - set(DEFAULT_ALGORITHMS)
        if unknown:
            raise ValueError(f"trusted issuer {self.issuer}: algorithms {sorted(unknown)} are not "
                             f"allowed for software statements (allowed: {DEFAULT_ALGORITHMS})")


def _fetchable(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and is_loopback_host(parts.hostname or ""))


@dataclass
class _Issuer:
    config: TrustedIssuer
    jwks: RemoteJwks | None
    historical: HistoricalKeysClient | None


@dataclass
class StatementVerifier:
    """Verifies statements of the trusted issuers; thread-safe, keeps its caches warm."""

    trusted: Sequence[TrustedIssuer]
    clock: Clock = field(default_factory=SystemClock)
    leeway: int = DEFAULT_LEEWAY
    max_token_bytes: int = MAX_TOKEN_BYTES
    #: An unknown ``kid`` refetches the JWKS at most this often (seconds).
    min_refresh_interval: float = 60.0
    #: How long the last good JWKS keeps serving while the issuer is unreachable (seconds).
    max_stale: float = 86400.0
    status: StatusListClient | None = None
    #: This server's own identifier: statements with ``aud`` verify only when it is among
    #: their audiences (RFC 7519 section 4.1.3). Usually the AS's issuer identifier.
    audience: str | None = None

    def __post_init__(self) -> None:
        self._issuers: dict[str, _Issuer] = {}
        for trusted in self.trusted:
            remote = None
            historical = None
            if trusted.jwks_uri is not None:
                remote = RemoteJwks(rebase(trusted.jwks_uri, trusted.issuer, trusted.base_url),
                                    clock=self.clock,
                                    min_refresh_interval=self.min_refresh_interval,
                                    max_stale=self.max_stale)
                historical = HistoricalKeysClient(rebase(
                    trusted.historical_keys_uri or f"{trusted.issuer}/.well-known/historical-keys",
                    trusted.issuer, trusted.base_url), clock=self.clock)
            self._issuers[trusted.issuer] = _Issuer(trusted, remote, historical)
        if self.status is None:
            self.status = StatusListClient(clock=self.clock, leeway=self.leeway)

    def issuer(self, name: str) -> _Issuer:
        return self._issuers[name]

    def verify(self, token: str, *, status: bool = True) -> VerifiedStatement:
        """Verify ``token``; raise InvalidSoftwareStatement or UnapprovedSoftwareStatement.

        With ``status=False`` the Token Status List is left for :meth:`check_status`, so that
        a caller with cheap checks of its own (one-time use) runs them before any status
        fetch (draft-ietf-oauth-status-list section 8: no status processing for an invalid
        token)."""
        if not isinstance(token, str):
            raise invalid("not a string")
        if len(token) > self.max_token_bytes:
            raise invalid(f"longer than {self.max_token_bytes} bytes")
        parsed = parse_compact(token)  # shape and key-carrying headers: refused before any fetch
        check_kind(parsed)  # another kind of token: refused before any fetch
        header = parsed.header
        claimed = parsed.unverified_claims().get("iss")
        entry = self._issuers.get(claimed) if isinstance(claimed, str) else None
        if entry is None:
            near = difflib.get_close_matches(str(claimed), list(self._issuers), n=1, cutoff=0.9)
            # A trailing slash or a case difference is invisible unless both values are shown.
            raise UnapprovedSoftwareStatement(
                f"software statement rejected: issuer {claimed!r} is not trusted here"
                + (f" (the trusted issuer is {near[0]!r}: iss must match it exactly)"
                   if near else ""))
        trusted = entry.config
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        jwks = trusted.jwks if entry.jwks is None else entry.jwks.get(kid)
        assert jwks is not None
        try:
            result = verify(parsed, jwks=jwks, issuer=trusted.issuer,
                            algorithms=trusted.algorithms, clock=self.clock, leeway=self.leeway,
                            require_exp=trusted.require_exp, audience=self.audience)
        except InvalidSoftwareStatement as exc:
            if kid is not None and entry.historical is not None and "unknown key" in exc.description:
                raise self._explain(entry, kid, jwks) from None
            raise
        if trusted.max_age is not None:
            age = self.clock.now() - float(result.claims["iat"])
            if age > trusted.max_age + self.leeway:
                raise invalid(f"issued {int(age)}s ago; this server accepts statements of "
                              f"{trusted.issuer} up to {trusted.max_age}s old")
        if status:
            self.check_status(result)
        return result

    def check_status(self, statement: VerifiedStatement) -> None:
        """Refuse ``statement`` if its issuer revoked or suspended it (when its trusted
        issuer checks status); call only on a statement :meth:`verify` accepted."""
        entry = self._issuers[statement.issuer]
        if not entry.config.check_status or self.status is None:
            return
        jwks = entry.config.jwks if entry.jwks is None else entry.jwks.get(statement.kid)
        assert jwks is not None
        check_status(statement.claims, self.status, jwks=jwks, issuer=entry.config.issuer,
                     base_url=entry.config.base_url)

    def _explain(self, entry: _Issuer, kid: str, jwks: dict[str, Any]) -> InvalidSoftwareStatement:
        assert entry.historical is not None
        known = entry.historical.lookup(kid, jwks=jwks, issuer=entry.config.issuer)
        if known is None:
            return invalid(f"unknown key: kid {kid!r} is not in the issuer's JWKS nor in its "
                           "historical keys")
        revoked = known.get("revoked")
        if isinstance(revoked, dict):
            when = revoked.get("revoked_at")
            at = f" at {rfc3339(when)}" if isinstance(when, int) else ""
            return invalid(f"its key {kid} was revoked ({revoked.get('reason', 'unspecified')})"
                           f"{at}")
        return invalid(f"its key {kid} is no longer published (expired)")
