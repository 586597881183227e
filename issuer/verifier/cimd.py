"""Resolving Client ID Metadata Documents for an authorization server (docs/cimd.md).

When a client's ``client_id`` is an https URL, draft-ietf-oauth-client-id-metadata-document
("CIMD") has the authorization server fetch the client's metadata from that URL::

    resolver = ClientIdResolver(StatementVerifier(trusted=[TrustedIssuer(...)]))
    client = resolver.resolve("https://agent.example.com/oauth/client.json")
    client.metadata        # what to use for this client
    client.disagreements   # where the document and its software statement differ

What :meth:`ClientIdResolver.resolve` checks, in order (section numbers of revision -01):

1. the URL form: https, a path, no dot segments, no fragment, no userinfo (section 3);
2. every address the host resolves to: never a special-use address (RFC 6890), loopback
   included, unless ``unsafe_allow_loopback`` is set for development, which also admits http
   on loopback (section 6.5, Server Side Request Forgery);
3. the fetch: no redirects followed, 200 only, a JSON content type, at most ``max_bytes``
   (5 KB by default, section 6.6), bounded in time (section 4);
4. the document: a JSON object whose ``client_id`` is exactly the URL, no shared-secret
   authentication, no ``client_secret``, and the RFC 7591 metadata rules
   (:func:`issuer.core.metadata.check_document`, section 4.1);
5. its ``software_statement`` against the trusted issuers, status included
   (:class:`~issuer.verifier.trust.StatementVerifier`); required unless
   ``require_statement=False``;
6. every disagreement between the document and the statement, reported; the statement's values
   win (``on_disagreement="statement"``), or any disagreement rejects (``"reject"``).

A good document is cached as its ``Cache-Control`` says (section 4.4; never past the
statement's ``exp``) and its statement re-verified on every use, so a revocation counts as soon
as the status list says so. Errors are never cached: the next call fetches again.

Known limit: the addresses are checked, then the fetch resolves the name again; a name that
changes its answer in between (DNS rebinding) is not caught here. Run the fetch behind an egress
policy that refuses private destinations too (the draft asks for network policies as well).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from issuer.core import metadata
from issuer.core.clock import Clock, SystemClock
from issuer.core.errors import (
    InvalidClientId,
    InvalidClientMetadata,
    InvalidRedirectURI,
    InvalidSoftwareStatement,
)
from issuer.verifier.registration import STATEMENT_ONLY
from issuer.verifier.remote import FETCH_TIMEOUT, FetchError, HttpGet, cache_lifetime, http_get
from issuer.verifier.statement import VerifiedStatement
from issuer.verifier.trust import StatementVerifier

CIMD = metadata.CIMD
DOCUMENT_ACCEPT = "application/json"
#: Seconds a document without caching headers is reused, and the most any document is.
DEFAULT_MAX_AGE = 300
MAX_AGE_CAP = 86400

#: ``(host, port)`` -> every IP address the name resolves to.
ResolveHost = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the system resolver answers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why a fetch must not go to ``address``, if it must not (RFC 6890 special-use)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if not ip.is_global or ip.is_multicast:
        return "a special-use address (RFC 6890)"
    return None


_ABSENT: Any = object()


@dataclass(frozen=True)
class Disagreement:
    """One claim on which the document and its statement differ."""

    claim: str
    document: Any
    statement: Any

    @property
    def kind(self) -> str:
        if self.document is _ABSENT:
            return "missing from the document"
        if self.statement is _ABSENT:
            return "not in the statement"
        return "differs"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"claim": self.claim, "kind": self.kind}
        if self.document is not _ABSENT:
            out["document"] = self.document
        if self.statement is not _ABSENT:
            out["statement"] = self.statement
        return out

    def describe(self) -> str:
        if self.document is _ABSENT:
            return f"'{self.claim}' is in the statement ({_short(self.statement)}) only"
        if self.statement is _ABSENT:
            return f"'{self.claim}' is in the document ({_short(self.document)}) only"
        return (f"'{self.claim}' is {_short(self.document)} in the document, "
                f"{_short(self.statement)} in the statement")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def disagreements(document: Mapping[str, Any],
                  statement: Mapping[str, Any]) -> list[Disagreement]:
    """Every client metadata claim on which ``document`` and the statement's claims differ."""
    stated = {k: v for k, v in statement.items() if k not in STATEMENT_ONLY}
    client = {k: v for k, v in document.items() if k not in metadata.CIMD_OWN}
    found = []
    for name in sorted(set(stated) | set(client)):
        mine, theirs = client.get(name, _ABSENT), stated.get(name, _ABSENT)
        if mine is _ABSENT or theirs is _ABSENT or mine != theirs:
            found.append(Disagreement(name, mine, theirs))
    return found


@dataclass(frozen=True)
class ResolvedClient:
    """A client identified by a metadata document that passed every check."""

    client_id: str
    #: The metadata to use: the document's, with the statement's values where they differ.
    metadata: dict[str, Any]
    document: dict[str, Any]
    statement: VerifiedStatement | None
    disagreements: tuple[Disagreement, ...]
    #: Until when (clock seconds) this resolution may be reused.
    expires: float

    def as_json(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "metadata": self.metadata,
                "statement": None if self.statement is None else {
                    "iss": self.statement.issuer, "kid": self.statement.kid,
                    "digest": self.statement.digest, "claims": self.statement.claims},
                "disagreements": [d.as_json() for d in self.disagreements]}


def _metadata_error(finding: metadata.Finding, where: str) -> InvalidClientMetadata:
    error = InvalidRedirectURI if finding.code == "invalid_redirect_uri" else InvalidClientMetadata
    return error(finding.line(where))


@dataclass
class ClientIdResolver:
    """Resolves client identifier URLs to checked client metadata; thread-safe."""

    verifier: StatementVerifier
    #: Refuse documents that carry no ``software_statement``.
    require_statement: bool = True
    #: ``"statement"``: the statement's values win where the two differ (as RFC 7591 section
    #: 3.1.1 has them win over a registration request); ``"reject"``: any difference rejects.
    on_disagreement: Literal["statement", "reject"] = "statement"
    #: Development only: loopback addresses, and http on them, are fetched.
    unsafe_allow_loopback: bool = False
    max_bytes: int = metadata.CIMD_MAX_BYTES
    timeout: float = FETCH_TIMEOUT
    default_max_age: int = DEFAULT_MAX_AGE
    max_age_cap: int = MAX_AGE_CAP
    #: At most this many resolved clients are cached: anyone can make a server resolve
    #: client ids, so the cache must not grow with them.
    max_entries: int = 10_000
    clock: Clock = field(default_factory=SystemClock)
    resolve_host: ResolveHost = resolve_host
    get: HttpGet | None = None

    def __post_init__(self) -> None:
        self._cache: dict[str, ResolvedClient] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def resolve(self, client_id: str) -> ResolvedClient:
        """The checked client behind ``client_id``, or a coded error (never a partial one)."""
        self._check_url(client_id)
        now = self.clock.now()
        with self._lock:
            cached = self._cache.pop(client_id, None)  # a failure below leaves nothing cached
        if cached is not None and now < cached.expires:
            if cached.statement is not None:  # revoked since? the status list says
                self.verifier.verify(cached.document["software_statement"])
            resolved = cached
        else:
            resolved = self._fetch_and_check(client_id, now)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache = {k: v for k, v in self._cache.items() if now < v.expires}
                while len(self._cache) >= self.max_entries:  # the oldest entries go first
                    del self._cache[next(iter(self._cache))]
            self._cache[client_id] = resolved
        return resolved

    def _check_url(self, client_id: str) -> None:
        if not isinstance(client_id, str):
            raise InvalidClientId("client_id is not a string")
        parts = urlsplit(client_id)
        development = self.unsafe_allow_loopback and parts.scheme == "http" and \
            metadata.is_loopback_host(parts.hostname or "")
        problem = metadata.client_id_url_problem(
            "https" + client_id[4:] if development else client_id)
        if problem:
            raise InvalidClientId(f"client_id {client_id!r} {problem} ({CIMD} section 3)")

    def _check_addresses(self, client_id: str) -> None:
        parts = urlsplit(client_id)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addresses = self.resolve_host(host, port)
        except (OSError, ValueError) as exc:
            raise InvalidClientId(f"client_id {client_id}: cannot resolve {host}: {exc}") from None
        if not addresses:
            raise InvalidClientId(f"client_id {client_id}: {host} has no address")
        for address in addresses:
            problem = address_problem(address, allow_loopback=self.unsafe_allow_loopback)
            if problem:
                raise InvalidClientId(
                    f"client_id {client_id}: {host} resolves to {address}, {problem}; not "
                    f"fetched ({CIMD} section 6.5, Server Side Request Forgery)")

    def _fetch(self, client_id: str) -> tuple[dict[str, Any], Mapping[str, str]]:
        self._check_addresses(client_id)
        self.fetches += 1
        try:
            if self.get is not None:
                response = self.get(client_id, {"Accept": DOCUMENT_ACCEPT})
            else:
                response = http_get(client_id, {"Accept": DOCUMENT_ACCEPT}, limit=self.max_bytes,
                                    timeout=self.timeout)
        except FetchError as exc:
            raise InvalidClientId(f"client metadata document: {exc}") from None
        where = f"client metadata document {client_id}"
        if response.status != 200:
            raise InvalidClientId(f"{where} answered HTTP {response.status}; only 200 is a "
                                  f"document ({CIMD} section 4)")
        if len(response.body) > self.max_bytes:
            raise InvalidClientId(f"{where} is larger than {self.max_bytes} bytes ({CIMD} "
                                  "section 6.6)")
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/")
                                                and media.endswith("+json")):
            raise InvalidClientId(f"{where} is served as {media or 'no content type'!r}, not "
                                  f"application/json ({CIMD} section 4.1)")
        try:
            document = json.loads(response.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InvalidClientId(f"{where} is not JSON (RFC 8259)") from None
        return document, response.headers

    def _fetch_and_check(self, client_id: str, now: float) -> ResolvedClient:
        document, headers = self._fetch(client_id)
        found = metadata.errors(metadata.check_document(document, client_id))
        if found:
            raise _metadata_error(found[0], f"client metadata document {client_id}")
        statement = self._statement(document)
        differ: list[Disagreement] = []
        merged = {k: v for k, v in document.items() if k not in metadata.CIMD_OWN}
        expires = now + cache_lifetime(headers, self.default_max_age, self.max_age_cap)
        if statement is not None:
            differ = disagreements(document, statement.claims)
            if differ and self.on_disagreement == "reject":
                raise InvalidClientMetadata(
                    f"client metadata document {client_id} disagrees with its software "
                    f"statement: {'; '.join(d.describe() for d in differ)}")
            merged.update({k: v for k, v in statement.claims.items() if k not in STATEMENT_ONLY})
            expires = min(expires, float(statement.claims.get("exp", expires)))
            # The statement's values must make a valid document too (a statement may be older
            # than the draft's rules, or name a shared-secret method).
            found = metadata.errors(metadata.check_document({**merged, "client_id": client_id},
                                                            client_id))
            if found:
                raise _metadata_error(found[0], f"client {client_id} with its statement's values")
        return ResolvedClient(client_id, merged, document, statement, tuple(differ), expires)

    def _statement(self, document: Mapping[str, Any]) -> VerifiedStatement | None:
        token = document.get("software_statement")
        if token is None:
            if self.require_statement:
                raise InvalidSoftwareStatement(
                    "the client metadata document carries no software_statement, and this "
                    "server requires one (RFC 7591 section 2.3)")
            return None
        return self.verifier.verify(token)
