"""The issuing authority: the one core object the CLI and the HTTP service both drive.

:class:`Authority` owns the configuration, the keystore, the templates and the audit store.
Fronts translate arguments and errors; every rule and every write happens here or below.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import getpass
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from issuer.core.clock import Clock, SystemClock, rfc3339
from issuer.core.config import (
    CONFIG_FILE,
    Config,
    load_config,
    normalize_alg,
    render_config,
    validate_issuer_url,
    validate_key_backend,
)
from issuer.core.encoding import canonical_json, statement_digest
from issuer.core.errors import (
    AuditUnavailable,
    ConfigError,
    Conflict,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidSoftwareStatement,
    InvalidTarget,
    IssuerError,
    NotFound,
    UnusableDatabase,
    UnsupportedGrantType,
    UsageError,
)
from issuer.core.files import atomic_write
from issuer.core.statements import (
    MintRequest,
    MintResult,
    build_payload,
    new_jti,
    resolve_claims,
)
from issuer.core.publishers import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    ID_TOKEN_TYPE,
    CiTokenVerifier,
    Match,
    choose,
    parse_publishers,
    unverified_claims,
)
from issuer.core.signing import sign_payloads
from issuer.core.templates import Template, TemplateStore
from issuer.core.tokens import TokenStore
from issuer.keys.backends import Prompt, open_backend
from issuer.keys.backends.file import Passphrase
from issuer.keys.keystore import Keystore, Signer
from issuer.keys.lifecycle import KeyLifecycle
from issuer.log.highwater import HighWaterMark
from issuer.log.tlog import LogVerificationError, TransparencyLog, origin_for
from issuer.status import statuslist
from issuer.status.registry import STATUS_NAMES, StatusRegistry
from issuer.store.integrity import log_unlogged_state
from issuer.store.audit import (
    DATABASE_ERRORS,
    STATE_LOGGED_VERSION,
    AuditStore,
    StatementRecord,
)
from issuer.verifier.jose import read_header
from issuer.verifier.remote import StatusListClient, http_fetch
from issuer.verifier.statement import VerifiedStatement, verify

Progress = Callable[[int], None]


def local_principal() -> str:
    """The local user, recorded as the principal of CLI actions (docs/audit.md)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


#: The most of a refused CI token's claims an audit event keeps (bytes of JSON).
MAX_LOGGED_CLAIMS = 8 * 1024
#: How long the service remembers an Idempotency-Key (docs/http-api.md).
IDEMPOTENCY_WINDOW = 24 * 3600
#: Statements signed and written per step of a batch's one transaction (memory, not
#: durability: the transaction still commits all of them or none).
RECORD_CHUNK = 1000


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is built. A batch allocates a few dicts per
    statement that all live until it commits, so the collector would run every few hundred
    statements and walk the whole growing batch each time, finding nothing (a record holds no
    cycles); reference counting still frees everything. It runs as usual afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class _Prepared:
    request: MintRequest
    template: Template
    claims: dict[str, Any]
    principal: str
    channel: str

    @property
    def scope(self) -> str:
        """Whose Idempotency-Keys: a publisher's across its exchanges, else the principal's."""
        origin = self.request.origin
        return f"publisher:{origin.publisher}" if origin else f"principal:{self.principal}"


class Authority:
    """Keys, templates and audit records of one issuer, behind one set of operations."""

    def __init__(self, config: Config, *, clock: Clock | None = None,
                 env: Mapping[str, str] | None = None, prompt: Prompt | None = None) -> None:
        env = os.environ if env is None else env
        self.config = config
        self.clock: Clock = clock or SystemClock()
        backend = open_backend(config.key_backend, keys_dir=config.keys_dir, base=config.home,
                               env=env, prompt=prompt)
        self.keystore = Keystore(config.keys_dir, Passphrase(env, prompt), backend=backend)
        self.templates = TemplateStore(config.templates_dir, config.max_lifetime)
        self._audit: AuditStore | None = None
        self._status: StatusRegistry | None = None
        self._ci_tokens: CiTokenVerifier | None = None
        #: The trusted publishers of issuer.toml, checked (docs/pipelines.md).
        self.publishers = parse_publishers(config.publishers, str(config.path))
        self.keys = KeyLifecycle(self.keystore, lambda: self.audit, config, self.clock)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, *,
                    env: Mapping[str, str] | None = None, clock: Clock | None = None,
                    prompt: Prompt | None = None) -> Authority:
        """Load issuer.toml (lookup order of docs/configuration.md) and build the authority
        over it; ``prompt`` asks for the key passphrase on a terminal when none is set."""
        return cls(load_config(path, env), clock=clock, env=env, prompt=prompt)

    @property
    def audit(self) -> AuditStore:
        """The audit store, opened (and migrated) on first use, its transparency log attached
        and checked to be this issuer's, whole up to its high-water mark."""
        if self._audit is None:
            self._audit = self._open_audit(create=False, checked=True)
        return self._audit

    def create_database(self) -> AuditStore:
        """``issuer init`` only: a new database, 0600, with a new log key."""
        if self._audit is not None:
            raise Conflict("the database is already open")
        self._audit = self._open_audit(create=True, checked=True)
        return self._audit

    def inspect(self) -> AuditStore:
        """The audit store opened for ``audit verify`` and ``doctor``: its log attached but
        the open checks left to them, so that they can say everything that is wrong."""
        if self._audit is None:
            self._audit = self._open_audit(create=False, checked=False)
        return self._audit

    def _open_audit(self, *, create: bool, checked: bool) -> AuditStore:
        store = AuditStore.open(self.config.database, create=create)
        try:
            self._attach_log(store, create)
            if checked:
                self.check_open(store)
        except LogVerificationError as exc:
            store.close()
            raise UnusableDatabase(f"refusing the database {store.path}: "
                                   f"{exc.description}") from None
        except DATABASE_ERRORS as exc:
            store.close()
            raise UnusableDatabase(f"the database {store.path} is damaged ({exc}); "
                                   "run `issuer doctor`, and restore it from a backup") from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def highwater(self) -> HighWaterMark:
        """The newest signed checkpoint, kept beside the log key (docs/transparency-log.md)."""
        return HighWaterMark(self.config.keys_dir)

    @property
    def log(self) -> TransparencyLog:
        """The issuance transparency log (docs/transparency-log.md)."""
        log = self.audit.log
        assert log is not None
        return log

    def _attach_log(self, store: AuditStore, create: bool) -> None:
        """Every event enters the Merkle tree. The log key is made by ``issuer init`` only, and
        state from before it was logged (schema 4) is logged once, by the upgrade.

        Only then: an open never rebuilds a log whose tables lost rows, or anyone who can write
        the database could have a rewritten history signed afresh (`issuer audit verify`
        reports it instead)."""
        verifier = self.keystore.log_verifier()
        if verifier is None:
            if not create:
                raise UnusableDatabase(
                    f"the transparency log key is missing from {self.config.keys_dir}; "
                    "restore the keys directory from its backup (docs/operations.md)")
            verifier = self.keystore.create_log_key(origin_for(self.config.issuer))
        log = TransparencyLog(store.conn, self.keystore.log_signer, verifier)
        highwater = self.highwater
        store.log = log
        log.on_commit = highwater.advance
        if create:
            with store.transaction():
                store.append_event(time=self.now(), type="log.key_generated",
                                   actor=local_principal(), channel="cli", subject=verifier.name,
                                   data={"origin": verifier.name,
                                         "verifier_key": verifier.verifier_key()})
        elif store.opened_at_version < STATE_LOGGED_VERSION:
            if highwater.read() is None:  # a database from before the mark: trusted once
                highwater.advance(log.latest()[1])
            with store.transaction():
                log_unlogged_state(store, time=self.now(), actor=local_principal())

    def check_open(self, store: AuditStore) -> None:
        """What every command checks when it opens the log (two indexed lookups): the database
        is this issuer's, and it still holds the newest checkpoint kept beside the log key."""
        assert store.log is not None
        self._check_identity(store, store.log)
        self.highwater.check(store.log)

    def check_identity(self) -> None:
        """The open database is this issuer's (its log key and origin)."""
        store = self.inspect()
        assert store.log is not None
        self._check_identity(store, store.log)

    def _check_identity(self, store: AuditStore, log: TransparencyLog) -> None:
        """The database is this issuer's: its log was started with this log key, and its
        newest checkpoint verifies with that key and this issuer's origin."""
        if log.origin != origin_for(self.config.issuer):
            raise LogVerificationError(
                f"it is not this issuer's: its log is {log.origin}, but the issuer "
                f"{self.config.issuer} of {self.config.path} names "
                f"{origin_for(self.config.issuer)}")
        started = store.log_key_event()
        if started is None or started.get("verifier_key") != log.verifier.verifier_key():
            raise LogVerificationError(
                f"it is not this issuer's: its log was not started with the log key in "
                f"{self.config.keys_dir} (another issuer's database, or another's keys)")
        try:
            log.latest()
        except NotFound:
            raise LogVerificationError("its log has entries but no signed checkpoint") from None
        except LogVerificationError:
            raise LogVerificationError(
                f"it is not this issuer's: its newest checkpoint does not verify with the log "
                f"key and origin {log.origin} of {self.config.path}") from None

    @property
    def status(self) -> StatusRegistry:
        """Token Status Lists: indices, revocation, suspension (docs/revocation.md)."""
        if self._status is None:
            self._status = StatusRegistry(self.audit, self.config, self.clock)
        return self._status

    def set_status(self, ref: str, status: str, reason: str, *, actor: str,
                   channel: str) -> tuple[StatementRecord, bool]:
        """Revoke, suspend or un-suspend (``status``: revoked, suspended, active) a statement
        by jti or digest; returns its record and whether anything changed."""
        targets = {"revoked": statuslist.INVALID, "suspended": statuslist.SUSPENDED,
                   "active": statuslist.VALID}
        if status not in targets:
            raise UsageError(f"status {status!r} is not one of {', '.join(targets)}")
        record = self.audit.statement(ref)
        return self.status.change(record, targets[status], reason, actor=actor,
                                  channel=channel, now=self.now())

    def statement_status(self, token: str) -> dict[str, Any]:
        """``POST /v1/status``: what this issuer says of a statement it signed."""
        try:
            digest = statement_digest(token.strip())
            record = self.audit.statement(digest)
        except (NotFound, UnicodeEncodeError):
            return {"status": "unknown"}
        answer: dict[str, Any] = {"jti": record.jti, "exp": record.exp}
        current = STATUS_NAMES[self.status.status_of(record.jti)]
        key = next((k for k in self.keystore.keys() if k.kid == record.kid), None)
        if current == "revoked":
            answer.update(status="revoked", revoked_at=record.revoked_at,
                          reason=record.revocation_reason)
        elif key is not None and key.state == "revoked":
            answer.update(status="revoked", revoked_at=key.revoked_at,
                          reason=f"signing key revoked ({key.revocation_reason})")
        elif current == "suspended":
            answer["status"] = "suspended"
        elif record.exp <= self.now():
            answer["status"] = "expired"
        else:
            answer["status"] = "active"
        return answer

    @property
    def ci_tokens(self) -> CiTokenVerifier:
        """Verifies CI ID tokens for the trusted publishers; its key caches live as long as
        the authority (one per served process)."""
        if self._ci_tokens is None:
            self._ci_tokens = CiTokenVerifier(self.publishers, self.config.exchange_audience,
                                              self.clock)
        return self._ci_tokens

    def exchange(self, form: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/oidc/token`` (RFC 8693 section 2): a CI ID token for a minter token of
        the publisher it matches. Every exchange, accepted or refused, is an audit event."""
        claims: dict[str, Any] = {}
        chosen: str | None = None
        try:
            subject = _exchange_subject(form, self.config.issuer)
            claims = unverified_claims(subject)
            ci = self.ci_tokens.verify(subject)
            claims = ci.claims
            publisher, results = choose(self.ci_tokens.for_issuer(ci.issuer), ci.claims)
            if publisher is None:
                why = "; ".join(f"{name}: {reason}" for name, reason in results)
                raise InvalidGrant(f"no trusted publisher matches this token ({why})")
            chosen = publisher.name
            templates = _exchange_scope(form.get("scope"), publisher.templates)
            match = Match(publisher, ci)
            origin = {"publisher": publisher.name, "repository": match.repository,
                      "provenance": match.provenance, "ci_claims": ci.claims}
            lifetime = self.config.exchange_lifetime
            token, secret = self.tokens.exchange(
                publisher=publisher.name, templates=templates, lifetime=lifetime,
                ci_issuer=ci.issuer, ci_jti=ci.jti, ci_exp=ci.exp, origin=origin,
                event={"publisher": publisher.name, "ci_claims": ci.claims}, now=self.now())
        except IssuerError as exc:
            if not isinstance(exc, AuditUnavailable):
                self._refused_exchange(exc, chosen, claims)
            raise
        return {"access_token": secret, "token_type": "Bearer", "expires_in": lifetime,
                "issued_token_type": ACCESS_TOKEN_TYPE, "scope": " ".join(token.templates)}

    def _refused_exchange(self, exc: IssuerError, publisher: str | None,
                          claims: Mapping[str, Any]) -> None:
        kept = dict(claims) if len(canonical_json(claims)) <= MAX_LOGGED_CLAIMS else {
            "iss": claims.get("iss"), "sub": claims.get("sub"), "truncated": True}
        with self.audit.transaction():
            self.audit.append_event(
                time=self.now(), type="oidc.refused", actor=str(claims.get("sub", "unknown")),
                channel="http", subject=publisher or str(claims.get("iss", "unknown")),
                data={"publisher": publisher, "error": exc.error,
                      "error_description": exc.description, "ci_claims": kept})

    @property
    def tokens(self) -> TokenStore:
        """API tokens of the HTTP service, kept in the audit database."""
        return TokenStore(self.audit)

    def close(self) -> None:
        self.keystore.backend.close()
        if self._audit is not None:
            self._audit.close()
            self._audit = None
            self._status = None

    def now(self) -> int:
        return int(self.clock.now())

    # --- minting ---------------------------------------------------------------------

    def mint(self, request: MintRequest, *, principal: str, channel: str) -> MintResult:
        """Mint one statement; it is returned only once its audit record is committed."""
        return self.mint_many([request], principal=principal, channel=channel)[0]

    def mint_many(self, requests: Sequence[MintRequest], *, principal: str, channel: str,
                  progress: Progress | None = None,
                  labels: Sequence[str] | None = None,
                  committing: Progress | None = None, workers: int = 0) -> list[MintResult]:
        """Mint all of ``requests`` or none: every one is checked before the one transaction
        that signs and records them all (a chunk at a time: ``RECORD_CHUNK``). An error names its item by ``labels`` (``file:line: ``),
        or as ``item N: ``. ``committing(n)`` is called before the last of the ``n``
        statements' records are written: from there on the batch commits. With ``workers``,
        a large batch is signed in that many forked processes (issuer/core/signing.py)."""
        templates: dict[str, Template] = {}  # each template is read once per batch
        if labels is None:
            labels = [f"item {i + 1}: " if len(requests) > 1 else "" for i in range(len(requests))]
        with gc_paused():
            prepared = [self._prepare(req, principal, channel, templates, label)
                        for req, label in zip(requests, labels, strict=True)]
            results = self._commit(prepared, progress, committing, workers)
        for result in results:
            if isinstance(result, IssuerError):
                raise result
        return [r for r in results if isinstance(r, MintResult)]

    def mint_group(self, items: Sequence[tuple[MintRequest, str, str]]
                   ) -> list[MintResult | IssuerError]:
        """Group commit for independent callers (``request, principal, channel``): a request
        that fails its checks fails alone; the others are recorded in one transaction, and
        every result is handed out only after it commits."""
        templates: dict[str, Template] = {}
        outcomes: list[MintResult | IssuerError | None] = []
        prepared = []
        for request, principal, channel in items:
            try:
                prepared.append(self._prepare(request, principal, channel, templates, ""))
                outcomes.append(None)
            except IssuerError as exc:
                outcomes.append(exc)
        with gc_paused():
            committed = iter(self._commit(prepared) if prepared else [])
        return [outcome if outcome is not None else next(committed) for outcome in outcomes]

    def _commit(self, prepared: Sequence[_Prepared], progress: Progress | None = None,
                committing: Progress | None = None,
                workers: int = 0) -> list[MintResult | IssuerError]:
        signer = self.keystore.signer()
        now = self.now()
        # One transaction: the status indices, the signatures that carry them, the records and
        # the log checkpoint commit together, or not at all.
        with self.audit.transaction():
            # An Idempotency-Key seen inside the window answers with its statement; looked up
            # in the transaction, so two concurrent retries can't both mint.
            earlier = [self._idempotent(item, now) for item in prepared]
            fresh = [item for item, found in zip(prepared, earlier) if found is None]
            seen: set[str] = set()
            for item in fresh:
                if item.template.name not in seen:
                    self._note_template(item.template, now, item.principal, item.channel)
                    seen.add(item.template.name)
            refs = self.status.allocate(len(fresh), now, actor=fresh[0].principal,
                                        channel=fresh[0].channel) if fresh else []
            minted: list[MintResult] = []
            # The payloads are made here, in order, and signed as they come (in worker
            # processes for a large batch, a few tasks ahead); each is kept until its
            # signature is back.
            made: collections.deque[dict[str, Any]] = collections.deque()

            def payloads() -> Iterator[dict[str, Any]]:
                for item, ref in zip(fresh, refs):
                    made.append(self._payload(item, now, ref.claim()))
                    yield made[-1]

            signed = sign_payloads(signer, payloads(), count=len(fresh), workers=workers)
            # Signed and written a chunk at a time, inside the one transaction: only the
            # results wait for the commit, not every record, entry text and row of the batch.
            with contextlib.closing(signed):
                for start in range(0, len(fresh), RECORD_CHUNK):
                    chunk = fresh[start:start + RECORD_CHUNK]
                    chunk_refs = refs[start:start + RECORD_CHUNK]
                    first = self.audit.next_index()
                    records = []
                    for index, item in enumerate(chunk, start=first):
                        payload_json, token = next(signed)
                        records.append(self._record(item, signer, made.popleft(), payload_json,
                                                    token, index))
                        if progress:
                            progress(1)
                    if committing and start + RECORD_CHUNK >= len(fresh):
                        committing(len(fresh))
                    committed = self.audit.record_statements(
                        records, status=[(ref.list_id, ref.idx) for ref in chunk_refs])
                    del records
                    for item, record in zip(chunk, committed):
                        key = item.request.idempotency_key
                        if key is not None:
                            self.audit.remember_idempotent(item.scope, key,
                                                           item.request.digest(), record.jti,
                                                           now, now - IDEMPOTENCY_WINDOW)
                        minted.append(_result(record))
        results = iter(minted)
        return [next(results) if found is None else found for found in earlier]

    def _payload(self, item: _Prepared, now: int, status: dict[str, Any]) -> dict[str, Any]:
        origin = item.request.origin
        return build_payload(issuer=self.config.issuer, claims=item.claims, iat=now,
                             lifetime=item.template.lifetime, jti=new_jti(), status=status,
                             provenance=origin.provenance if origin else None)

    def _record(self, item: _Prepared, signer: Signer, payload: dict[str, Any],
                payload_json: bytes, token: str, index: int) -> StatementRecord:
        origin = item.request.origin
        now, jti = payload["iat"], payload["jti"]
        return StatementRecord(
            jti=jti, digest=statement_digest(token), iss=self.config.issuer,
            kid=signer.kid, alg=signer.alg, template=item.template.name,
            template_digest=item.template.digest,
            software_id=_text(item.claims.get("software_id")),
            software_version=_text(item.claims.get("software_version")),
            claims=payload, mint_values=dict(item.request.claims), iat=now,
            exp=payload["exp"], principal=item.principal, channel=item.channel,
            software_statement=token, log_index=index,
            publisher=origin.publisher if origin else None,
            repository=origin.repository if origin else None,
            ci_claims=origin.ci_claims if origin else None, claims_json=payload_json)

    def _idempotent(self, item: _Prepared, now: int) -> MintResult | IssuerError | None:
        """The statement an earlier request with this Idempotency-Key got, a Conflict when
        the key was used for another request, or None (mint)."""
        key = item.request.idempotency_key
        if key is None:
            return None
        found = self.audit.idempotent(item.scope, key, now - IDEMPOTENCY_WINDOW)
        if found is None:
            return None
        digest, jti = found
        if digest != item.request.digest():
            return Conflict(f"Idempotency-Key {key!r} was used for a different request in the "
                            "last 24 hours; use a new key for a new request")
        return replace(_result(self.audit.statement(jti)), replayed=True)

    def _prepare(self, request: MintRequest, principal: str, channel: str,
                 templates: dict[str, Template], label: str) -> _Prepared:
        try:
            template = templates.get(request.template)
            if template is None:
                template = templates[request.template] = self.templates.load(request.template)
            return _Prepared(request, template, resolve_claims(template, request.claims),
                             principal, channel)
        except IssuerError as exc:
            if label:  # name the failing item of a batch
                exc.description = label + exc.description
            raise

    def _note_template(self, template: Template, now: int, actor: str, channel: str) -> None:
        """Record a template's first use, or what changed since the version last used."""
        latest = self.audit.latest_template_version(template.name)
        if latest is not None and latest[0] == template.digest:
            return
        content = template.content()
        data: dict[str, Any]
        if latest is None:
            event, data = "template.recorded", {"template": template.name,
                                                "digest": template.digest, "content": content}
        else:
            event, data = "template.changed", {
                "template": template.name, "old_digest": latest[0],
                "new_digest": template.digest, "changes": diff_templates(latest[1], content),
                # who edited, not only who minted next (the event's actor)
                "edited": self.templates.editors(template.chain), "content": content}
        self.audit.record_template_version(name=template.name, digest=template.digest,
                                           content=content, event_type=event, data=data,
                                           time=now, actor=actor, channel=channel)

    # --- keys ------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set a verifier needs now."""
        return self.keys.jwks()

    def change_key_passphrase(self, new: str | None, *, actor: str, channel: str) -> list[str]:
        """Re-encrypt every key file under ``new`` (None: unencrypted), all or nothing, and
        record that it happened (never the passphrase)."""
        files = self.keystore.change_passphrase(new)
        with self.audit.transaction():
            self.audit.append_event(time=self.now(), type="keystore.passphrase_changed",
                                    actor=actor, channel=channel,
                                    subject=str(self.config.keys_dir),
                                    data={"files": files, "encrypted": new is not None})
        return files

    # --- verifying -------------------------------------------------------------------

    def status_client(self) -> StatusListClient:
        """A status list client that reads this issuer's own lists from its database (signed
        and verified exactly as served) and fetches any other over HTTP."""
        prefix = f"{self.config.issuer}/v1/status-lists/"

        def fetch(uri: str) -> bytes:
            if uri.startswith(prefix):
                return self.status.document(uri[len(prefix):], self.keystore)[0].encode()
            return http_fetch(uri)

        return StatusListClient(clock=self.clock, fetch=fetch)

    def verify(self, token: str, *, jwks: Mapping[str, Any] | None = None,
               issuer: str | None = None, check_status: bool = True,
               audience: str | None = None) -> VerifiedStatement:
        """Verify like an authorization server would (one whose identifier is ``audience``),
        by default against this issuer's published keys and status lists; a statement of a
        revoked key says so."""
        try:
            return verify(token, jwks=self.jwks() if jwks is None else jwks,
                          issuer=issuer or self.config.issuer, clock=self.clock,
                          status=self.status_client() if check_status else None,
                          audience=audience)
        except InvalidSoftwareStatement as exc:
            if jwks is None and "unknown key" in exc.description:
                kid = read_header(token).get("kid")
                known = {k.kid: k for k in self.keystore.keys()}
                if isinstance(kid, str) and kid in known and known[kid].state in ("revoked", "expired"):
                    key = known[kid]
                    why = (f"revoked ({key.revocation_reason}) at {rfc3339(key.revoked_at or 0)}"
                           if key.state == "revoked" else f"expired at {rfc3339(key.expired_at or 0)}")
                    raise InvalidSoftwareStatement(
                        f"software statement rejected: its key {kid} was {why}") from None
            raise


def diff_templates(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed between two resolved templates, field by field and claim by claim."""
    changes: list[dict[str, Any]] = []
    for key in sorted((set(old) | set(new)) - {"claims"}):
        if old.get(key) != new.get(key):
            changes.append(_change(key, old.get(key), new.get(key)))
    old_claims, new_claims = old.get("claims", {}), new.get("claims", {})
    for claim in sorted(set(old_claims) | set(new_claims)):
        if old_claims.get(claim) != new_claims.get(claim):
            changes.append(_change(f"claims.{claim}", old_claims.get(claim),
                                   new_claims.get(claim)))
    return changes


def _change(path: str, old: Any, new: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"path": path, "old": old, "new": new}
    if isinstance(old, list) and isinstance(new, list):
        change["added"] = [v for v in new if v not in old]
        change["removed"] = [v for v in old if v not in new]
    return change


def _exchange_subject(form: Mapping[str, str], issuer: str) -> str:
    """The RFC 8693 section 2.1 parameters of a token exchange; the CI ID token."""
    if form.get("grant_type") != GRANT_TYPE:
        raise UnsupportedGrantType(f"grant_type must be {GRANT_TYPE}")
    if form.get("subject_token_type") != ID_TOKEN_TYPE:
        raise InvalidRequest(f"subject_token_type must be {ID_TOKEN_TYPE}")
    requested = form.get("requested_token_type")
    if requested not in (None, ACCESS_TOKEN_TYPE):
        raise InvalidRequest(f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
    for name in ("audience", "resource"):
        if form.get(name) not in (None, issuer):
            raise InvalidTarget(f"{name} {form.get(name)!r} is not this issuer ({issuer})")
    for name in ("actor_token", "actor_token_type"):
        if name in form:
            raise InvalidRequest(f"{name} is not supported (no delegation)")
    subject = form.get("subject_token")
    if not subject:
        raise InvalidRequest("subject_token is missing (the CI's OIDC ID token)")
    return subject


def _exchange_scope(scope: str | None, allowed: Sequence[str]) -> list[str]:
    """``scope``: the templates wanted, space-separated; all of the publisher's when absent."""
    if scope is None:
        return list(allowed)
    wanted = scope.split()
    outside = sorted(set(wanted) - set(allowed))
    if not wanted or outside:
        raise InvalidScope(f"template(s) {', '.join(outside) or '(none)'} are not among this "
                           f"publisher's ({', '.join(allowed)})")
    return wanted


def _result(r: StatementRecord) -> MintResult:
    return MintResult(software_statement=r.software_statement, jti=r.jti, digest=r.digest,
                      kid=r.kid, iat=r.iat, exp=r.exp, template=r.template,
                      log_index=r.log_index)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def shipped_templates() -> Iterable[tuple[str, bytes]]:
    """The example templates shipped with the package (the repository's ``templates/``)."""
    folder = resources.files("issuer") / "shipped_templates"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            yield entry.name, entry.read_bytes()


def init_issuer(directory: Path, *, issuer: str, alg: str, actor: str,
                clock: Clock | None = None, env: Mapping[str, str] | None = None,
                database: str = "issuer.db", key_backend: str = "file") -> Authority:
    """Create an issuer home: config, keystore with a first active key, example templates and
    the database (a SQLite file, or a PostgreSQL URL). Refuses to touch a directory or a
    database that already holds an issuer."""
    env = os.environ if env is None else env
    try:
        issuer = validate_issuer_url(issuer)
        alg = normalize_alg(alg)
        key_backend = validate_key_backend(key_backend)
    except ValueError as exc:
        raise ConfigError(f"issuer init: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True)
    for existing in (CONFIG_FILE, "issuer.db", "keys/keyring.json"):
        if (directory / existing).exists():
            raise Conflict(f"an issuer already exists in {directory} ({existing}); refusing to "
                           "overwrite it")
    templates = directory / "templates"
    templates.mkdir(exist_ok=True)
    for name, body in shipped_templates():
        if not (templates / name).exists():  # a user's own template of that name wins
            atomic_write(templates / name, body)
    keys = directory / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    os.chmod(keys, 0o700)  # a checked-out keys/ is 0755: only its owner may enter it
    if not (keys / ".gitignore").exists():
        atomic_write(keys / ".gitignore", b"# private keys never go into git\n*\n")
    before = set(keys.iterdir())  # what a failed init must leave as it found it
    atomic_write(directory / CONFIG_FILE,
                 render_config(issuer, alg, database, key_backend).encode("utf-8"))
    try:
        authority = Authority(load_config(directory / CONFIG_FILE, env={}), clock=clock, env=env)
    except BaseException:
        (directory / CONFIG_FILE).unlink(missing_ok=True)
        raise
    try:
        authority.create_database()
        authority.keys.generate(alg, actor=actor, channel="cli")
        authority.keys.ensure_next(actor=actor, channel="cli")
    except BaseException:
        # Leave nothing half-made: a later `issuer init` must not find a broken issuer.
        authority.close()
        for leftover in (CONFIG_FILE, "issuer.db", "issuer.db-wal", "issuer.db-shm"):
            (directory / leftover).unlink(missing_ok=True)
        # The keyring, the log's key and checkpoint, and any private key made before the failure.
        for made in set(keys.iterdir()) - before:
            if made.is_file() or made.is_symlink():
                made.unlink()
        raise
    return authority
