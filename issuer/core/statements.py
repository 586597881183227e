"""Building software statements (RFC 7591 section 2.3; docs/audit.md).

A mint request names a template and gives values for the claims that template lets a caller
set. This module turns the two into the final payload: the template's claims, the mint-time
values, then the claims only the issuer sets (``iss``, ``iat``, ``exp``, ``jti``), which no
input can reach. The same request shape serves ``issuer mint``, ``--batch`` lines and
``POST /v1/statements``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from issuer.core import metadata
from issuer.core.encoding import b64url, canonical_json
from issuer.core.errors import InvalidClientMetadata, InvalidRedirectURI, InvalidRequest, UsageError
from issuer.core.templates import Template, check_name

JTI_BYTES = 16  # 128 random bits (RFC 7519 section 4.1.7: unique; docs/audit.md)


@dataclass(frozen=True)
class Origin:
    """Where a statement minted through a trusted publisher came from (docs/pipelines.md):
    set by the issuer from a verified CI token, never from a request body."""

    publisher: str
    repository: str | None
    provenance: dict[str, str]
    ci_claims: dict[str, Any]


@dataclass(frozen=True)
class MintRequest:
    """``{"template": ..., "claims": {...}}``: what a caller may ask for; ``origin`` and
    ``idempotency_key`` come from the caller's credential and headers, not from the body."""

    template: str
    claims: dict[str, Any] = field(default_factory=dict)
    origin: Origin | None = None
    idempotency_key: str | None = None

    def digest(self) -> str:
        """What an Idempotency-Key is bound to: the template and the mint-time values."""
        return hashlib.sha256(canonical_json({"template": self.template,
                                              "claims": self.claims})).hexdigest()


@dataclass(frozen=True)
class MintResult:
    """What a caller gets back, after the audit record is committed."""

    software_statement: str
    jti: str
    digest: str
    kid: str
    iat: int
    exp: int
    template: str
    log_index: int
    #: True when an Idempotency-Key found this statement already issued (not in the output).
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The object of ``issuer mint --json`` and of ``POST /v1/statements``."""
        return {
            "software_statement": self.software_statement,
            "jti": self.jti,
            "digest": self.digest,
            "kid": self.kid,
            "iat": self.iat,
            "exp": self.exp,
            "template": self.template,
            "log_index": self.log_index,
        }


def parse_mint_request(obj: Any, where: str = "request") -> MintRequest:
    """Validate the shape of a mint request object (a JSON body or a batch line)."""
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: must be a JSON object with 'template' and 'claims'")
    unknown = set(obj) - {"template", "claims"}
    if unknown:
        raise UsageError(f"{where}: unknown member(s) {', '.join(sorted(map(str, unknown)))} "
                         "(allowed: template, claims)")
    template = obj.get("template")
    if not isinstance(template, str):
        raise UsageError(f"{where}: 'template' must be a template name string")
    claims = obj.get("claims", {})
    if not isinstance(claims, dict):
        raise UsageError(f"{where}: 'claims' must be a JSON object of claim values")
    check_name(template)
    for name, value in claims.items():
        check_encodable(value, f"{where}: claim '{name}'")
    return MintRequest(template=template, claims=claims)


def check_encodable(value: Any, where: str) -> None:
    """A claim value must be plain JSON text: Python's JSON reader accepts NaN and Infinity,
    and a ``\\ud800`` escape gives an unpaired surrogate that no UTF-8 encoder writes
    (RFC 8259 sections 6 and 8.2). Refused here, in the one request that sent it, rather than
    failing the transaction that records a whole group of mints."""
    try:
        canonical_json(value)
    except ValueError:
        raise InvalidRequest(f"{where}: NaN and Infinity are not JSON numbers (RFC 8259 "
                             "section 6)") from None
    except UnicodeEncodeError:
        raise InvalidRequest(f"{where}: holds an unpaired UTF-16 surrogate, which is not "
                             "Unicode text (RFC 8259 section 8.2)") from None


def check_mint_values(template: Template, values: Mapping[str, Any]) -> None:
    """Only overridable claims may be given; every required one must be (docs/templates.md)."""
    for name in values:
        reserved = metadata.reserved_finding(name, statement=False)
        if reserved is not None:
            raise InvalidClientMetadata(reserved.line(f"template '{template.name}'"))
        if name not in template.overridable:
            allowed = ", ".join(sorted(template.overridable)) or "none"
            raise InvalidRequest(f"template '{template.name}': claim '{name}' can't be set at "
                                 f"mint time (overridable: {allowed})")
    missing = sorted(template.required - values.keys())
    if missing:
        raise InvalidRequest(f"template '{template.name}': required claim(s) missing: "
                             f"{', '.join(missing)}")


def resolve_claims(template: Template, values: Mapping[str, Any]) -> dict[str, Any]:
    """The template's claims with the mint-time values, checked again as a whole."""
    check_mint_values(template, values)
    for name, value in values.items():
        check_encodable(value, f"template '{template.name}': claim '{name}'")
    claims = {**template.claims, **values}
    # The template's own claims passed every per-claim rule when it was loaded; the mint-time
    # values get them now, and the rules across claims see the whole.
    for finding in metadata.errors(metadata.check_claims(claims, changed=values.keys())):
        error = InvalidRedirectURI if finding.code == "invalid_redirect_uri" else \
            InvalidClientMetadata
        raise error(f"template '{template.name}': claim '{finding.claim}': {finding.message} "
                    f"({finding.rule})")
    return claims


def new_jti() -> str:
    """128 random bits, base64url (RFC 7519 section 4.1.7: collision-resistant)."""
    return b64url(secrets.token_bytes(JTI_BYTES))


def build_payload(*, issuer: str, claims: Mapping[str, Any], iat: int, lifetime: int,
                  jti: str, status: Mapping[str, Any],
                  provenance: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The signed payload. The issuer's own claims are written last, so nothing overrides them;
    ``status`` is the Token Status List reference (draft-ietf-oauth-status-list section 6);
    ``provenance`` says which publisher, repository, ref and run produced the build."""
    payload = {**claims, "iss": issuer, "iat": iat, "exp": iat + lifetime, "jti": jti,
               "status": dict(status)}
    if provenance is not None:
        payload["provenance"] = dict(provenance)
    return payload


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for the JWS payload (RFC 7519 section 7.1), canonical (sorted keys):
    the audit record splices these exact bytes into its entry instead of encoding the claims
    a second time (:meth:`issuer.store.audit.StatementRecord.event_text`)."""
    return canonical_json(payload)
