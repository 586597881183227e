"""Dynamic client registration with software statements (RFC 7591 section 3.1.1).

:class:`Registrar` takes a registration request, verifies its ``software_statement`` with a
:class:`~issuer.verifier.StatementVerifier`, applies the server's policies, and returns the
metadata to register: the statement's values take precedence over the request's (RFC 7591
section 3.1.1, "the authorization server MUST use the values in the software statement"). Every
decision, accepted or rejected, yields the audit fields a server should keep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from issuer.core import metadata
from issuer.core.clock import Clock, SystemClock
from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import (
    InvalidClientMetadata,
    InvalidRedirectURI,
    InvalidSoftwareStatement,
    IssuerError,
)
from issuer.verifier.jose import MAX_JSON_DEPTH, json_depth
from issuer.verifier.statement import VerifiedStatement
from issuer.verifier.trust import StatementVerifier

#: JWT claims of the statement itself, not client metadata (RFC 7519 section 4.1, status list).
STATEMENT_ONLY = frozenset({"iss", "sub", "aud", "iat", "exp", "nbf", "jti", "status"})


class ReplayCache(Protocol):
    """Remembers statement ``jti``s until they expire. ``first_use`` must be atomic."""

    def first_use(self, issuer: str, jti: str, exp: int) -> bool:
        """Record the use; True the first time, False when seen before."""
        ...


class MemoryReplayCache:
    """A process-local :class:`ReplayCache`; use a shared store (Redis SET NX EX, a database
    unique key) when several registration servers run."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, exp: int) -> bool:
        now = self.clock.now()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            key = (issuer, jti)
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = exp
            return True


@dataclass(frozen=True)
class RegistrationPolicy:
    """What this server requires beyond a valid statement (all off by default)."""

    #: Refuse registrations without a software statement.
    require_statement: bool = True
    #: Requested ``redirect_uris`` must all appear in the statement's.
    redirect_uris_subset: bool = False
    #: Requested ``scope`` tokens must all appear in the statement's; the narrower request is
    #: then what is granted.
    scope_subset: bool = False
    #: A requested ``jwks_uri`` must equal the statement's.
    jwks_uri_must_match: bool = False
    #: Only statements issued within this many seconds (Open Finance Brasil uses 300).
    max_iat_age: int | None = None
    #: One-time use: a statement's ``jti`` registers once.
    replay_cache: ReplayCache | None = None


@dataclass
class Registration:
    """An accepted registration: what to register and what to record."""

    metadata: dict[str, Any]
    statement: VerifiedStatement | None
    audit: dict[str, Any] = field(default_factory=dict)


def _thumbprints(jwks: Any) -> list[str | None] | None:
    """RFC 7638 thumbprints of the client's keys by value, for the server's records."""
    if not isinstance(jwks, dict):
        return None
    prints: list[str | None] = []
    for key in jwks.get("keys", []):
        try:
            prints.append(jwk_thumbprint(key))
        except (ValueError, TypeError):
            prints.append(None)
    return prints


def _scope_tokens(value: Any) -> list[str]:
    return value.split(" ") if isinstance(value, str) and value else []


def _without_claims_of(request: Mapping[str, Any], stated: Mapping[str, Any]) -> dict[str, Any]:
    """The request without every claim the statement sets, language-tagged variants included
    (RFC 7591 sections 2.2 and 3.1.1: the statement's ``client_name`` wins over a requested
    ``client_name#de`` too)."""
    bases = {metadata.base_claim(name) for name in stated}
    return {k: v for k, v in request.items() if metadata.base_claim(k) not in bases}


def redirect_matches(requested: Any, allowed: Any) -> bool:
    """Exact match, except that a loopback IP redirect matches on any port (RFC 8252 section
    7.3: a native app's port is chosen at run time)."""
    if not isinstance(requested, str) or not isinstance(allowed, str):
        return False
    if requested == allowed:
        return True
    a, b = urlsplit(requested), urlsplit(allowed)
    try:
        a.port, b.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return False
    return a.scheme == b.scheme == "http" and metadata.is_loopback_ip(a.hostname or "") and \
        a.hostname == b.hostname and \
        (a.path, a.query, a.fragment) == (b.path, b.query, b.fragment)


@dataclass
class Registrar:
    """Registration requests in, metadata to register out (or a coded error)."""

    verifier: StatementVerifier
    policy: RegistrationPolicy = field(default_factory=RegistrationPolicy)
    clock: Clock | None = None
    #: Called with the audit fields of every decision, accepted or rejected.
    on_decision: Callable[[dict[str, Any]], None] | None = None

    def registration_metadata(self, request_json: Any) -> dict[str, Any]:
        """The metadata to register for ``request_json`` (statement values win)."""
        return self.register(request_json).metadata

    def register(self, request_json: Any) -> Registration:
        audit: dict[str, Any] = {"timestamp": int((self.clock or self.verifier.clock).now())}
        try:
            registration = self._register(request_json, audit)
        except IssuerError as exc:
            audit.update(decision="rejected", error=exc.error, error_description=exc.description)
            self._record(audit)
            raise
        except Exception as exc:
            # A bug met by hostile input is still a decision: recorded, and refused (never a
            # registration), before the server's own error handling sees it.
            audit.update(decision="rejected", error="server_error",
                         error_description=f"{type(exc).__name__} while registering")
            self._record(audit)
            raise
        audit["decision"] = "accepted"
        registration.audit = audit
        self._record(audit)
        return registration

    def _record(self, audit: dict[str, Any]) -> None:
        if self.on_decision is not None:
            self.on_decision(dict(audit))

    def _register(self, request_json: Any, audit: dict[str, Any]) -> Registration:
        if not isinstance(request_json, Mapping):
            raise InvalidClientMetadata("the registration request must be a JSON object "
                                        "(RFC 7591 section 3.1)")
        if json_depth(request_json) > MAX_JSON_DEPTH:
            raise InvalidClientMetadata(f"the registration request is nested deeper than "
                                        f"{MAX_JSON_DEPTH} levels")
        request = dict(request_json)
        token = request.pop("software_statement", None)
        audit["requested_scope"] = request.get("scope") if isinstance(request.get("scope"),
                                                                      str) else None
        if token is None:
            if self.policy.require_statement:
                raise InvalidSoftwareStatement("a software statement is required to register "
                                               "here (RFC 7591 section 2.3)")
            return Registration(self._checked(request, audit), None)
        # Status last: nothing is fetched for a statement the cheap checks refuse.
        statement = self.verifier.verify(token, status=False)
        self._describe(statement, audit)
        stated = {k: v for k, v in statement.claims.items() if k not in STATEMENT_ONLY}
        self._apply_policies(request, stated, statement)
        merged = {**_without_claims_of(request, stated), **stated}
        if self.policy.scope_subset and "scope" in request:
            merged["scope"] = request["scope"]  # the narrower request is what is granted
        checked = self._checked(merged, audit)
        self._use_once(statement)
        self.verifier.check_status(statement)
        # RFC 7591 section 3.2.1: the response carries the statement, unmodified.
        return Registration({**checked, "software_statement": token}, statement)

    def _apply_policies(self, request: dict[str, Any], stated: dict[str, Any],
                        statement: VerifiedStatement) -> None:
        """The server's policies; each refuses when the statement lacks what it compares
        against (fail closed), rather than letting the request decide."""
        policy = self.policy
        if policy.redirect_uris_subset and "redirect_uris" in request:
            allowed = stated.get("redirect_uris")
            if not isinstance(allowed, list):
                raise InvalidRedirectURI("the software statement names no redirect_uris, so "
                                         "requested redirect URIs can't be allowed")
            requested = request["redirect_uris"]
            if not isinstance(requested, list):
                raise InvalidRedirectURI("redirect_uris must be an array of strings")
            extra = [u for u in requested if not any(redirect_matches(u, a) for a in allowed)]
            if extra:
                raise InvalidRedirectURI(f"redirect URI(s) {extra} are not in the software "
                                         "statement")
        if policy.scope_subset and "scope" in request:
            if not isinstance(stated.get("scope"), str):
                raise InvalidClientMetadata("the software statement names no scope, so a "
                                            "requested scope can't be allowed")
            wider = set(_scope_tokens(request["scope"])) - set(_scope_tokens(stated["scope"]))
            if wider or not isinstance(request["scope"], str):
                raise InvalidClientMetadata(f"scope {sorted(wider)} is not in the software "
                                            "statement")
        if policy.jwks_uri_must_match and "jwks_uri" in request and \
                request["jwks_uri"] != stated.get("jwks_uri"):
            raise InvalidClientMetadata("jwks_uri differs from the software statement's"
                                        if "jwks_uri" in stated else
                                        "the software statement names no jwks_uri, so a "
                                        "requested jwks_uri can't be allowed")
        if policy.max_iat_age is not None:
            age = (self.clock or self.verifier.clock).now() - float(statement.claims["iat"])
            if age > policy.max_iat_age + self.verifier.leeway:
                raise InvalidSoftwareStatement(f"software statement issued {int(age)}s ago; "
                                               f"this server accepts {policy.max_iat_age}s")

    def _use_once(self, statement: VerifiedStatement) -> None:
        """One-time use, the last check before status: a statement refused for anything else
        is not used up."""
        cache = self.policy.replay_cache
        if cache is None:
            return
        jti = statement.claims.get("jti")
        if not isinstance(jti, str):
            raise InvalidSoftwareStatement("software statement has no jti, so it can't be "
                                           "used once")
        # Remembered for as long as the statement verifies: exp plus the verifier's leeway
        # (RFC 7519 section 4.1.4); without exp (require_exp=False) for a day.
        now = (self.clock or self.verifier.clock).now()
        exp = int(statement.claims.get("exp", now + 86400)) + self.verifier.leeway
        if not cache.first_use(statement.issuer, jti, exp):
            raise InvalidSoftwareStatement(f"software statement {jti} was already used to "
                                           "register a client")

    def _checked(self, merged: dict[str, Any], audit: dict[str, Any]) -> dict[str, Any]:
        """The merged metadata must still follow RFC 7591 section 2."""
        for finding in metadata.errors(metadata.check_claims(merged)):
            error = InvalidRedirectURI if finding.code == "invalid_redirect_uri" else \
                InvalidClientMetadata
            raise error(f"claim '{finding.claim}': {finding.message} ({finding.rule})")
        audit.update(
            redirect_uris=merged.get("redirect_uris"),
            granted_scope=merged.get("scope"),
            token_endpoint_auth_method=merged.get("token_endpoint_auth_method"),
            jwks_uri=merged.get("jwks_uri"),
            jwk_thumbprints=_thumbprints(merged.get("jwks")),
        )
        return merged

    def _describe(self, statement: VerifiedStatement, audit: dict[str, Any]) -> None:
        audit.update(statement_issuer=statement.issuer, statement_digest=statement.digest,
                     statement_jti=statement.claims.get("jti"), kid=statement.kid,
                     key_thumbprint=self._thumbprint(statement),
                     software_id=statement.claims.get("software_id"),
                     software_version=statement.claims.get("software_version"))

    def _thumbprint(self, statement: VerifiedStatement) -> str | None:
        """RFC 7638 thumbprint of the key that verified the statement."""
        entry = self.verifier.issuer(statement.issuer)
        jwks = entry.config.jwks if entry.jwks is None else entry.jwks.get(statement.kid)
        for jwk in (jwks or {}).get("keys", []):
            if isinstance(jwk, dict) and jwk.get("kid") == statement.kid:
                try:
                    return jwk_thumbprint(jwk)
                except ValueError:
                    return None
        return None
