"""Client ID Metadata Documents carrying software statements (docs/cimd.md).

draft-ietf-oauth-client-id-metadata-document lets a client use an https URL as its
``client_id``; the authorization server fetches the JSON document at that URL for the client's
metadata. This issuer makes such documents in two ways, both with a freshly minted
``software_statement`` (RFC 7591 section 2.3) recorded like any other, channel ``cimd``:

- **export** (``issuer cimd export``): a document the vendor hosts on its own domain;
- **hosted** (``cimd = true`` in a template): ``GET /clients/<template>`` on the issuer, whose
  statement is renewed before it expires and whenever the template changes.

The document rules themselves live in :mod:`issuer.core.metadata` (``check_document``), the same
rules an authorization server's resolver applies (:mod:`issuer.verifier.cimd`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from issuer.core import metadata
from issuer.core.authority import Authority
from issuer.core.errors import InvalidClientMetadata, NotFound
from issuer.core.statements import MintRequest, MintResult
from issuer.core.templates import Template
from issuer.status import statuslist

CHANNEL = "cimd"
#: The principal of statements minted for hosted documents (no caller asked for them).
HOSTED_PRINCIPAL = "cimd-host"
#: What this issuer lets a document weigh: well under the 5 KB an authorization server is
#: advised to read (CIMD section 6.6), so that a renewed statement never tips it over.
DOCUMENT_BUDGET = 4 * 1024
#: Cache-Control max-age of a hosted document is at most this (seconds) ...
MAX_AGE_CAP = 3600
#: ... and at most this fraction of the embedded statement's remaining life.
MAX_AGE_SHARE = 10
#: What signing adds besides the claims and the issuer URL (which appears in ``iss`` and in the
#: status list URI): iat, exp, jti, the rest of status, the header, and a signature of up to
#: RSA-4096 size, all base64url.
_SIGNING_OVERHEAD = 1200

Mint = Callable[[MintRequest, str, str], MintResult]


def build_document(client_id: str, claims: Mapping[str, Any], statement: str) -> dict[str, Any]:
    """``client_id``, the client metadata, then the statement that vouches for it."""
    return {"client_id": client_id, **claims, "software_statement": statement}


def encode_document(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check(document: Mapping[str, Any], client_id: str, *, size: int | None = None,
          limit: int = DOCUMENT_BUDGET) -> None:
    """Every rule of the draft on ``document``, and a size limit (``size``: the encoded
    length, or an upper bound of it before the statement exists)."""
    found = metadata.errors(metadata.check_document(dict(document), client_id))
    if found:
        raise InvalidClientMetadata(found[0].line("Client ID Metadata Document"))
    length = len(encode_document(document)) if size is None else size
    if length > limit:
        raise InvalidClientMetadata(
            f"Client ID Metadata Document: about {length} bytes with its statement, over "
            f"{limit} (this issuer's budget is {DOCUMENT_BUDGET} bytes, well under the "
            f"{metadata.CIMD_MAX_BYTES} an authorization server may read: {metadata.CIMD} "
            "section 6.6); trim the template's claims")


def size_bound(client_id: str, claims: Mapping[str, Any], issuer: str) -> int:
    """An upper bound of the encoded document's length once its statement is signed."""
    unsigned = encode_document(build_document(client_id, claims, "-"))
    payload = len(json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False).encode())
    return len(unsigned) + (payload + 2 * len(issuer)) * 4 // 3 + _SIGNING_OVERHEAD


def _precheck(client_id: str, claims: Mapping[str, Any], authority: Authority) -> None:
    """Refuse before anything is minted: a statement is never recorded for a document that
    would be refused."""
    check(build_document(client_id, claims, "-"), client_id,
          size=size_bound(client_id, claims, authority.config.issuer))


def export_document(authority: Authority, name: str, client_id: str, values: Mapping[str, Any],
                    *, principal: str) -> bytes:
    """``issuer cimd export``: a document for ``client_id`` (an https URL the vendor hosts),
    with a statement minted from template ``name`` and recorded (channel ``cimd``)."""
    problem = metadata.client_id_url_problem(client_id)
    if problem:
        raise InvalidClientMetadata(f"--client-id {client_id!r} {problem} ({metadata.CIMD} "
                                    "section 3)")
    return _make(authority, authority.templates.load(name), client_id, dict(values),
                 lambda request: authority.mint(request, principal=principal, channel=CHANNEL))[0]


def _make(authority: Authority, template: Template, client_id: str, values: dict[str, Any],
          mint: Callable[[MintRequest], MintResult]) -> tuple[bytes, MintResult]:
    claims = {**template.claims, **values}
    _precheck(client_id, claims, authority)
    result = mint(MintRequest(template.name, values))
    document = build_document(client_id, claims, result.software_statement)
    body = encode_document(document)
    # The bound kept the document under the budget; the draft's own limit is the hard line.
    check(document, client_id, size=len(body), limit=metadata.CIMD_MAX_BYTES)
    return body, result


@dataclass(frozen=True)
class _Current:
    digest: str  # of the template the statement was minted from
    jti: str
    iat: int
    exp: int
    body: bytes

    def renew_at(self) -> int:
        """Half-way through the statement's life: an authorization server that cached the
        document for its whole max-age still holds a statement with most of its life left."""
        return self.iat + (self.exp - self.iat) // 2


class HostedDocuments:
    """The documents of ``cimd = true`` templates, at ``<issuer>/clients/<template>``.

    A statement is minted on first request, and again (each time recorded, with a
    ``cimd.renewed`` event saying why) when the current one is past half its life, was revoked
    or suspended, or the template changed. After a restart the newest still-good hosted
    statement in the audit records is served rather than a new one minted.
    """

    def __init__(self, authority: Authority, mint: Mint | None = None) -> None:
        self.authority = authority
        self._mint: Mint = mint or (lambda request, principal, channel: authority.mint(
            request, principal=principal, channel=channel))
        self._lock = threading.Lock()
        self._current: dict[str, _Current] = {}

    def url(self, name: str) -> str:
        return f"{self.authority.config.issuer}/clients/{name}"

    def document(self, name: str) -> tuple[bytes, int]:
        """The document of template ``name`` and the max-age to serve it with."""
        template = self.authority.templates.load(name)
        if not template.cimd:
            raise NotFound(f"no Client ID Metadata Document for template '{name}' (the template "
                           "does not set cimd = true)")
        with self._lock:  # one renewal at a time; the others then serve what it minted
            now = self.authority.now()
            current = self._current.get(name) or self._recorded(template, now)
            why = self._stale(current, template, now)
            if why is not None:
                current = self._renew(template, why, now)
            assert current is not None
            self._current[name] = current
        max_age = min(MAX_AGE_CAP, max(0, current.exp - now) // MAX_AGE_SHARE)
        return current.body, max_age

    def _stale(self, current: _Current | None, template: Template, now: int) -> str | None:
        """Why ``current`` must be replaced, or None while it is good."""
        if current is None:
            return "first"
        if current.digest != template.digest:
            return "template changed"
        if now >= current.renew_at():
            return "expiring"
        state = self.authority.status.status_of(current.jti)
        if state != statuslist.VALID:
            return "revoked" if state == statuslist.INVALID else "suspended"
        return None

    def _recorded(self, template: Template, now: int) -> _Current | None:
        """The newest hosted statement of this very template version still fit to serve."""
        records = self.authority.audit.statements(template=template.name, revoked=False,
                                                  since=now - template.lifetime)
        for record in reversed(records):
            if record.channel != CHANNEL or record.principal != HOSTED_PRINCIPAL:
                continue
            body = encode_document(build_document(self.url(template.name), template.claims,
                                                  record.software_statement))
            current = _Current(record.template_digest, record.jti, record.iat, record.exp, body)
            return current if self._stale(current, template, now) is None else None
        return None

    def _renew(self, template: Template, why: str, now: int) -> _Current:
        url = self.url(template.name)
        # The issuer's own URL is https, or http on loopback for development: the document
        # rules below still hold, the URL form is the issuer configuration's to check.
        body, result = _make(self.authority, template, url, {},
                             lambda request: self._mint(request, HOSTED_PRINCIPAL, CHANNEL))
        with self.authority.audit.transaction():
            self.authority.audit.append_event(
                time=now, type="cimd.renewed", actor=HOSTED_PRINCIPAL, channel=CHANNEL,
                subject=template.name, data={"template": template.name, "url": url,
                                             "jti": result.jti, "reason": why,
                                             "template_digest": template.digest})
        return _Current(template.digest, result.jti, result.iat, result.exp, body)
