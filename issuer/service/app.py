"""The HTTP service (docs/http-api.md): a thin FastAPI front over the Authority.

Public: the JWKS, the issuer metadata document, health. Bearer-authenticated: the mint API
(minter, admin), the audit API (auditor, admin), the templates a caller may mint.

Every error is the JSON object ``{"error", "error_description"}`` with its status; a request
body over 64 KiB is refused before it is parsed; no value of a request can reach ``iss``,
``jti``, ``iat``, ``exp``, ``alg`` or ``kid``: the core sets them from configuration.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import asdict, replace
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from issuer import __version__
from issuer.core.authority import Authority
from issuer.core.cimd import HostedDocuments
from issuer.core.clock import format_duration
from issuer.core.errors import (
    AuditUnavailable,
    InsufficientScope,
    InvalidRequest,
    IssuerError,
    MissingToken,
    NotFound,
    RequestTooLarge,
)
from issuer.core.search import StatementQuery, search
from issuer.core.statements import MintResult, Origin, parse_mint_request
from issuer.core.tokens import ApiToken, require_audit, require_mint
from issuer.log.merkle import leaf_hash
from issuer.log.tlog import b64
from issuer.service.batching import MintBatcher
from issuer.service.listen import listen
from issuer.service.logs import AuditTail, LogFormat, RequestLog, log_config
from issuer.service.metrics import CONTENT_TYPE as METRICS_TYPE
from issuer.service.metrics import Metrics
from issuer.service.ratelimit import RateLimiter
from issuer.service.web.routes import WebView

log = logging.getLogger("issuer.service")

MAX_BODY = 64 * 1024
JWK_SET_TYPE = "application/jwk-set+json"
STATUSLIST_JWT = "application/statuslist+jwt"
HISTORICAL_KEYS_TYPE = "application/jwk-set+jwt"
PAGE_DEFAULT, PAGE_MAX = 100, 1000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- models: they document the API in /openapi.json ------------------------------------------


class ErrorBody(BaseModel):
    """The error object of every failure."""

    error: str = Field(examples=["invalid_client_metadata"])
    error_description: str


class MintBody(BaseModel):
    """What a release pipeline asks for."""

    model_config = ConfigDict(extra="forbid")
    template: str = Field(examples=["mcp-connector"])
    claims: dict[str, Any] = Field(default_factory=dict,
                                   examples=[{"software_version": "1.4.2"}])


class StatusBody(BaseModel):
    """``POST /v1/status``."""

    model_config = ConfigDict(extra="forbid")
    software_statement: str = Field(max_length=64 * 1024)


class RevokeBody(BaseModel):
    """``POST /v1/statements/{jti}/revoke``."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)
    status: Literal["revoked", "suspended", "active"] = "revoked"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    text = {400: "Malformed request or client metadata", 401: "Missing or invalid bearer token",
            403: "The token's role or templates do not allow this", 404: "Not found",
            409: "The issuer's template is broken, or a conflict", 413: "Body over 64 KiB",
            429: "Rate limit exceeded (see Retry-After)", 503: "Audit store or keystore unusable"}
    return {s: {"model": ErrorBody, "description": text[s]} for s in statuses}


# --- request body limit -------------------------------------------------------------------------


class BodyLimit:
    """Refuse a body over ``limit`` bytes before any of it is parsed (413).

    The declared Content-Length is checked first; a body without one (chunked) is read up to
    ``limit`` + 1 bytes and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(send, declared.isdigit())
                return
            # The HTTP server delivers exactly Content-Length bytes (h11 enforces the framing),
            # so a declared body within the limit needs no counting.
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(send, True)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, too_large: bool) -> None:
        error = RequestTooLarge(f"request body over {self.limit} bytes") if too_large else \
            InvalidRequest("Content-Length is not a number")
        payload = json.dumps(error.as_json()).encode()
        await send({"type": "http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


# --- errors --------------------------------------------------------------------------------------


def error_response(error: IssuerError) -> JSONResponse:
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if isinstance(error, MissingToken):  # RFC 6750 section 3.1: no error code without credentials
        headers["WWW-Authenticate"] = 'Bearer realm="issuer"'
    elif error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="issuer", error="invalid_token"'
    elif error.status == 403:
        headers["WWW-Authenticate"] = 'Bearer realm="issuer", error="insufficient_scope"'
    retry = getattr(error, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    body = error.as_json()
    if not error.public:
        # The issuer's own failure: its description may hold paths and library messages. They
        # go to the server log; the caller learns only what kind of failure it was.
        log.error("%s: %s", error.error, error.description)
        body["error_description"] = SERVER_FAILURES.get(error.error, "the issuer failed")
    return JSONResponse(body, status_code=error.status, headers=headers)


#: What a caller is told of a failure on the issuer's side (details stay in the server log).
SERVER_FAILURES = {
    "keystore_error": "no signing key can be used; nothing was issued",
    "server_error": "the issuer failed; nothing was issued",
    "temporarily_unavailable": "the issuer's database can't be used now; nothing was issued",
}


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid request')}"


#: Renders an error as a page for the requests it owns (the web view), None for the others.
ErrorPage = Callable[[Request, IssuerError], Response | None]


def install_error_handlers(app: FastAPI, metrics: Metrics | None = None,
                           page: ErrorPage | None = None) -> None:
    def respond(request: Request, error: IssuerError) -> Response:
        if metrics is not None and request.method == "POST" and \
                request.url.path == "/v1/statements":
            metrics.refusal(error)
        shown = page(request, error) if page is not None else None
        return shown if shown is not None else error_response(error)

    async def issuer_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IssuerError)
        return respond(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond(request, InvalidRequest(_validation_message(exc)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            shown = page(request, NotFound(str(exc.detail))) if page is not None else None
            if shown is not None:
                return shown
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        body = {"error": code, "error_description": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, RecursionError):  # JSON nested past Python's limit: bad input
            return respond(request, InvalidRequest("request body nests too deeply"))
        log.exception("internal error")  # the traceback stays in the server log
        return JSONResponse({"error": "server_error", "error_description": "internal error"},
                            status_code=500)

    app.add_exception_handler(IssuerError, issuer_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


# --- the application -------------------------------------------------------------------------


class JwksCache:
    """The JWKS bytes, their strong ETag and the next change the issuer knows about.

    Rebuilt when the keyring file changes (a CLI rotation while the service runs) or when a
    known change comes due (a retired key's deadline). The keyring is looked at (one ``stat``)
    at most every ``recheck`` seconds: a key change made with the CLI is served within that,
    far inside the max-age verifiers may cache the JWKS for anyway.
    """

    def __init__(self, authority: Authority, recheck: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.authority = authority
        self.recheck = recheck
        self.monotonic = monotonic
        self._stamp: tuple[Any, ...] | None = None
        self._checked = float("-inf")
        self._change: int | None = None
        self.body = b""
        self.etag = ""
        self._response: tuple[tuple[str, int], Response] | None = None

    def current(self) -> tuple[bytes, str, int]:
        """Body, ETag and the max-age to send now."""
        now = self.authority.now()
        tick = self.monotonic()
        if tick - self._checked >= self.recheck or (self._change is not None
                                                    and now >= self._change):
            self._checked = tick
            stamp = self.authority.keys.stamp()
            if stamp != self._stamp or (self._change is not None and now >= self._change):
                keys = self.authority.keys
                body = json.dumps(keys.jwks(now), separators=(",", ":")).encode()
                digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode()
                self.body, self.etag, self._stamp = body, f'"{digest}"', stamp
                self._change = keys.next_change(now)
        limit = self.authority.config.service.jwks_max_age
        max_age = limit if self._change is None else max(0, min(limit, self._change - now))
        return self.body, self.etag, max_age


    def response(self, max_age: int) -> Response:
        """The 200 response for :meth:`current`'s body and ``max_age``: built once per key
        set and max-age, and sent as is to every request (nothing downstream alters it)."""
        made = self._response
        if made is None or made[0] != (self.etag, max_age):
            response = Response(self.body, media_type=JWK_SET_TYPE, headers={
                "ETag": self.etag, "Cache-Control": f"public, max-age={max_age}"})
            made = self._response = ((self.etag, max_age), response)
        return made[1]


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match (RFC 9110 section 13.1.2): ``*`` or a list of entity tags."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in {tag.strip().removeprefix("W/") for tag in header.split(",")}


class Maintenance:
    """Scheduled key work (rotation when due, expiry of retired keys) on a thread of its own:
    at start and every ``interval`` seconds until the service stops."""

    def __init__(self, authority: Authority, interval: float,
                 metrics: Metrics | None = None) -> None:
        self.authority = authority
        self.interval = interval
        self.metrics = metrics
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="issuer-maintenance", daemon=True)

    def run_once(self) -> None:
        try:
            for line in self.authority.keys.maintain():
                log.warning("key maintenance: %s", line)
        except IssuerError as exc:
            log.error("key maintenance failed: %s", exc.description)
            if self.metrics is not None:
                self.metrics.maintenance_failures.inc()

    def run(self) -> None:
        while True:
            self.run_once()
            if self.stop.wait(self.interval):
                return


def create_app(authority: Authority, maintenance_interval: float = 60.0,
               jwks_recheck: float = 1.0, shared_limits: bool | None = None) -> FastAPI:
    """The FastAPI application serving ``authority``.

    Run under a server (``issuer serve``), its lifespan rotates keys when due and expires
    retired keys every ``maintenance_interval`` seconds. Rate limits are kept in the database
    when ``shared_limits`` (default: on PostgreSQL, where replicas share it).
    """
    config = authority.config

    batcher = MintBatcher(authority)
    metrics = Metrics(authority)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        maintenance = Maintenance(authority, maintenance_interval, metrics)
        maintenance.thread.start()
        yield
        maintenance.stop.set()
        maintenance.thread.join(timeout=10)
        batcher.stop()

    if shared_limits is None:
        shared_limits = authority.audit.conn.postgresql
    limiter = RateLimiter(authority.clock, authority.audit if shared_limits else None)
    jwks_cache = JwksCache(authority, recheck=jwks_recheck)
    bearer_scheme = HTTPBearer(auto_error=False, description="API token: ssi_<id>.<secret>")

    app = FastAPI(
        title="Software statement issuer",
        version=__version__,
        description="Mint, publish and audit OAuth software statements (RFC 7591 section 2.3). "
                    "Errors are {error, error_description} objects.",
        docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan,
    )
    web = WebView(authority, limiter) if config.service.web else None
    install_error_handlers(app, metrics, web.error_page if web is not None else None)
    app.state.authority = authority
    app.state.batcher = batcher
    app.state.jwks_cache = jwks_cache

    async def caller(credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
                     ) -> ApiToken:
        # One process on SQLite: on the event loop, one indexed read on this thread's read-only
        # connection, which never waits for the writer, beats a hop to a worker thread.
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise MissingToken("missing bearer token (Authorization: Bearer ssi_...)")
        if limiter.shared is None:
            token = authority.tokens.authenticate(credentials.credentials, authority.now())
            limiter.check(token.name, token.limit(config.service.rate_limit))
        else:  # a database server: its round trips off the event loop
            token = await run_in_threadpool(authority.tokens.authenticate,
                                            credentials.credentials, authority.now())
            await run_in_threadpool(limiter.check, token.name,
                                    token.limit(config.service.rate_limit))
        return token

    async def auditor(token: ApiToken = Depends(caller)) -> ApiToken:
        require_audit(token)
        return token

    # --- public ---------------------------------------------------------------------------

    @app.get("/.well-known/jwks.json", tags=["public"],
             summary="The issuer's public JWK Set (RFC 7517 section 5)",
             responses={200: {"content": {JWK_SET_TYPE: {}}}, 304: {"description": "Not modified"}})
    async def jwks(request: Request) -> Response:
        body, etag, max_age = jwks_cache.current()
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={
                "ETag": etag, "Cache-Control": f"public, max-age={max_age}"})
        return jwks_cache.response(max_age)

    @app.get("/.well-known/software-statement-issuer", tags=["public"],
             summary="Issuer metadata: where verifiers find keys and endpoints")
    def issuer_metadata() -> dict[str, Any]:
        published = authority.keys.published()
        return {
            "issuer": config.issuer,
            "jwks_uri": f"{config.issuer}/.well-known/jwks.json",
            "historical_keys_uri": f"{config.issuer}/.well-known/historical-keys",
            "statement_signing_alg_values_supported": sorted({k.alg for k in published}),
            "statements_endpoint": f"{config.issuer}/v1/statements",
            "templates_endpoint": f"{config.issuer}/v1/templates",
            "status_endpoint": f"{config.issuer}/v1/status",
            "token_endpoint": f"{config.issuer}/v1/oidc/token",
            "trusted_publishing_audience": config.exchange_audience,
            "status_list_uri_prefix": f"{config.issuer}/v1/status-lists/",
            "transparency_log": {
                "origin": authority.log.origin,
                "checkpoint_uri": f"{config.issuer}/v1/log/checkpoint",
                "key_uri": f"{config.issuer}/v1/log/key",
                "inclusion_proof_uri": f"{config.issuer}/v1/log/proof/inclusion",
                "consistency_proof_uri": f"{config.issuer}/v1/log/proof/consistency",
            },
        }

    @app.get("/.well-known/historical-keys", tags=["public"],
             summary="Every key that ever signed, signed (OpenID Federation historical keys)",
             responses={200: {"content": {HISTORICAL_KEYS_TYPE: {}}}, **errors(503)})
    def historical_keys() -> Response:
        token = authority.keys.historical_keys_jwt()
        return Response(token, media_type=HISTORICAL_KEYS_TYPE,
                        headers={"Cache-Control": f"public, max-age={authority.keys.max_age()}"})

    @app.get("/healthz", tags=["public"], summary="Liveness and readiness",
             responses=errors(503))
    def healthz() -> Response:
        # Ready means a mint would succeed: the database answers and is writable, and the
        # active key loads and signs (a keyring entry alone is not enough).
        try:
            size = authority.audit.check_head()  # reachable, and not rolled back
            if not authority.audit.conn.postgresql and not os.access(config.database, os.W_OK):
                raise AuditUnavailable("the database is not writable")
            key = authority.keystore.active()
            authority.keystore.signer().sign(b"{}")
        except IssuerError as exc:
            log.error("health: %s", exc.description)
            return JSONResponse({"status": "unavailable", "error": exc.error,
                                 "error_description": SERVER_FAILURES.get(
                                     exc.error, "the issuer can't mint now")}, status_code=503)
        return JSONResponse({"status": "ok", "issuer": config.issuer, "active_kid": key.kid,
                             "log_size": size})

    # --- Client ID Metadata Documents (docs/cimd.md) ---------------------------------------

    hosted = HostedDocuments(authority, mint=lambda request, principal, channel: batcher.mint(
        request, principal=principal, channel=channel))

    @app.get("/clients/{name}", tags=["public"],
             summary="A template's Client ID Metadata Document (templates with cimd = true)",
             responses={200: {"content": {"application/json": {}}}, **errors(404, 409, 503)})
    def client_document(name: str) -> Response:
        body, max_age = hosted.document(name)
        return Response(body, media_type="application/json",
                        headers={"Cache-Control": f"public, max-age={max_age}"})

    @app.get("/clients/{name}/", include_in_schema=False)
    def client_document_slash(name: str) -> Response:
        # Without this route the framework would redirect to the URL without the slash; a
        # client_id URL never redirects (authorization servers must not follow it anyway).
        raise NotFound(f"no Client ID Metadata Document at /clients/{name}/ (the client_id "
                       "has no trailing slash)")

    # --- minting ----------------------------------------------------------------------------

    @app.post("/v1/statements", tags=["statements"], status_code=201,
              summary="Mint a software statement (minter with that template, or admin)",
              responses={201: {"model": MintResult}, **errors(400, 401, 403, 404, 409, 413,
                                                                   429, 503)})
    async def mint(body: MintBody, token: ApiToken = Depends(caller),
                   idempotency_key: str | None = Header(
                       None, description="Retries with the same key within 24 hours get the "
                                         "same statement back")) -> Response:
        request = parse_mint_request(body.model_dump())
        require_mint(token, request.template)
        request = replace(request, origin=token_origin(token),
                          idempotency_key=check_idempotency_key(idempotency_key))
        started = time.perf_counter()
        result = await batcher.mint_async(request, principal=token.name, channel="http")
        metrics.latency.observe(time.perf_counter() - started)
        if not result.replayed:
            metrics.minted.labels(template=result.template, channel="http").inc()
        headers = {"Location": f"/v1/statements/{result.jti}", "Cache-Control": "no-store"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(result.as_json(), status_code=201, headers=headers)

    # --- trusted publishing ---------------------------------------------------------------------

    @app.post("/v1/oidc/token", tags=["trusted publishing"],
              summary="Exchange a CI OIDC ID token for a short-lived minter token (RFC 8693)",
              openapi_extra={"requestBody": {"content": {
                  "application/x-www-form-urlencoded": {"schema": {
                      "type": "object", "required": ["grant_type", "subject_token",
                                                     "subject_token_type"],
                      "properties": {name: {"type": "string"} for name in (
                          "grant_type", "subject_token", "subject_token_type",
                          "requested_token_type", "scope", "audience", "resource")}}}}}},
              responses=errors(400, 413, 429, 503))
    async def oidc_token(request: Request) -> Response:
        # No bearer token to count against: the default rate applies per client address, so
        # nobody can flood the audit record with refused exchanges.
        limiter.check(f"oidc-exchange:{request.client.host if request.client else '-'}",
                      config.service.rate_limit)
        form = parse_form(await request.body(), request.headers.get("content-type", ""))
        answer = await run_in_threadpool(authority.exchange, form)
        return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # --- audit ----------------------------------------------------------------------------------

    @app.get("/v1/statements", tags=["audit"],
             summary="Audit records, oldest first, paginated (auditor, admin)",
             responses=errors(400, 401, 403, 429))
    def list_statements(
        request: Request,
        template: str | None = None,
        software_id: str | None = None,
        version: str | None = Query(None, description="software_version"),
        principal: str | None = Query(None, description="who minted: the token's name, a user"),
        kid: str | None = None,
        since: str | None = Query(None, description="RFC 3339 date/time, or a duration ago: 7d"),
        until: str | None = Query(None, description="RFC 3339 date/time (a date: that whole day)"),
        status: str | None = Query(None, description="active, revoked, suspended or expired"),
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
        limit: int = Query(PAGE_DEFAULT, ge=1, le=PAGE_MAX),
        revoked: bool | None = Query(None, description="true: only revoked; false: only not"),
        publisher: str | None = Query(None, description="minted through this trusted publisher"),
        repository: str | None = Query(None, description="built from this source repository"),
        _: ApiToken = Depends(auditor),
    ) -> dict[str, Any]:
        query = replace(StatementQuery.parse(request.query_params, authority.now()),
                        revoked=revoked)
        page = search(authority, query, limit=limit, cursor=cursor)
        return {"statements": [asdict(r) for r in page.records], "next_cursor": page.next_cursor}

    @app.get("/v1/statements/{jti}", tags=["audit"],
             summary="One audit record by jti or digest (auditor, admin)",
             responses=errors(401, 403, 404, 429))
    def get_statement(jti: str, _: ApiToken = Depends(auditor)) -> dict[str, Any]:
        return asdict(authority.audit.statement(jti))

    # --- templates ------------------------------------------------------------------------------

    def mintable(token: ApiToken) -> list[str]:
        names = authority.templates.names()
        return [n for n in names if token.may_mint(n)]

    @app.get("/v1/templates", tags=["templates"],
             summary="The templates the caller may mint", responses=errors(401, 429))
    def list_templates(token: ApiToken = Depends(caller)) -> dict[str, Any]:
        listed = []
        for name in mintable(token):
            try:
                t = authority.templates.load(name)
            except IssuerError:
                continue  # a broken template is not offered; minting it says why (409)
            listed.append({"name": t.name, "description": t.description,
                           "lifetime": format_duration(t.lifetime),
                           "overridable": sorted(t.overridable), "required": sorted(t.required)})
        return {"templates": listed}

    @app.get("/v1/templates/{name}", tags=["templates"],
             summary="One template the caller may mint, resolved",
             responses=errors(401, 404, 409, 429))
    def get_template(name: str, token: ApiToken = Depends(caller)) -> dict[str, Any]:
        if not token.may_mint(name):  # don't tell a minter which other templates exist
            raise NotFound(f"no template named {name!r} that this token may mint")
        t = authority.templates.load(name)
        return {"name": t.name, "extends": list(t.chain[1:]), "digest": t.digest, **t.content()}

    # --- revocation and status ------------------------------------------------------------------

    async def admin(token: ApiToken = Depends(caller)) -> ApiToken:
        if token.role != "admin":
            raise InsufficientScope(f"token '{token.name}' ({token.role}) may not revoke; an "
                                    "admin token may")
        return token

    @app.post("/v1/statements/{jti}/revoke", tags=["statements"],
              summary="Revoke (or suspend, un-suspend) a statement (admin)",
              responses=errors(400, 401, 403, 404, 409, 429))
    def revoke(jti: str, body: RevokeBody, token: ApiToken = Depends(admin)) -> dict[str, Any]:
        record, changed = authority.set_status(jti, body.status, body.reason, actor=token.name,
                                               channel="http")
        return {"jti": record.jti, "digest": record.digest, "status": body.status,
                "changed": changed, "revoked_at": record.revoked_at,
                "revocation_reason": record.revocation_reason}

    @app.get("/v1/status-lists/{list_id}", tags=["public"],
             summary="A Token Status List Token (statuslist+jwt; the unsigned JSON form left "
                     "draft-ietf-oauth-status-list in -06 and is not served)",
             responses={200: {"content": {STATUSLIST_JWT: {}}},
                        304: {"description": "Not modified"}, **errors(404)})
    def status_list(list_id: str, request: Request) -> Response:
        token, claims = authority.status.document(list_id, authority.keystore)
        body = token.encode()
        etag = '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode() + '"'
        age = max(0, authority.now() - int(claims["iat"]))
        headers = {"ETag": etag,
                   "Cache-Control": f"public, max-age={max(0, int(claims['ttl']) - age)}"}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=STATUSLIST_JWT, headers=headers)

    @app.post("/v1/status", tags=["public"],
              summary="The status of a statement this issuer signed: active, revoked, "
                      "suspended, expired or unknown", responses=errors(400, 413))
    def statement_status(body: StatusBody) -> dict[str, Any]:
        return authority.statement_status(body.software_statement)

    # --- transparency log ------------------------------------------------------------------------

    @app.get("/v1/log/checkpoint", tags=["log"], response_class=PlainTextResponse,
             summary="The newest signed checkpoint (C2SP tlog-checkpoint)",
             responses=errors(404))
    def log_checkpoint() -> Response:
        _, note = authority.log.latest()
        return PlainTextResponse(note, headers={"Cache-Control": "no-cache"})

    @app.get("/v1/log/key", tags=["log"], response_class=PlainTextResponse,
             summary="The log's note verifier key (C2SP signed-note)")
    def log_key() -> Response:
        return PlainTextResponse(authority.log.verifier.verifier_key() + "\n",
                                 headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/v1/log/proof/inclusion", tags=["log"],
             summary="RFC 9162 inclusion proof of a statement (by digest or jti)",
             responses=errors(400, 404))
    def log_inclusion(digest: str | None = None, jti: str | None = None,
                      tree_size: int | None = Query(None, ge=1)) -> dict[str, Any]:
        if (digest is None) == (jti is None):
            raise InvalidRequest("give exactly one of digest and jti")
        record = authority.audit.statement(digest if digest is not None else str(jti))
        if digest is not None and record.digest != digest.lower():
            raise NotFound(f"no statement with digest {digest!r}")
        proof = authority.log.inclusion(record.log_index, authority.audit.entry(record.log_index),
                                        tree_size)
        return {**proof.as_public_json(), "jti": record.jti, "digest": record.digest}

    @app.get("/v1/log/proof/consistency", tags=["log"],
             summary="RFC 9162 consistency proof between two tree sizes",
             responses=errors(400))
    def log_consistency(first: int = Query(..., ge=1), second: int = Query(..., ge=1)
                        ) -> dict[str, Any]:
        hashes = authority.log.consistency(first, second)
        return {"first": first, "second": second, "consistency_proof": [b64(h) for h in hashes]}

    @app.get("/v1/log/entries", tags=["log"],
             summary="Log entries start <= index < end, their exact leaf bytes (auditor, admin)",
             responses=errors(400, 401, 403, 429))
    def log_entries(start: int = Query(0, ge=0), end: int | None = Query(None, ge=1),
                    _: ApiToken = Depends(auditor)) -> dict[str, Any]:
        size = authority.log.size()
        stop = min(size, start + PAGE_MAX if end is None else end)
        if stop - start > PAGE_MAX:
            raise InvalidRequest(f"at most {PAGE_MAX} entries per request")
        if start > stop:
            raise InvalidRequest(f"start {start} is past end {stop} (tree size {size})")
        entries = [{"index": idx, "entry": entry.decode("utf-8"), "leaf_hash": b64(leaf_hash(entry))}
                   for idx, entry in enumerate(authority.audit.entries(start, stop), start=start)]
        return {"tree_size": size, "entries": entries}

    # --- operations ----------------------------------------------------------------------------

    @app.get("/metrics", tags=["public"], response_class=PlainTextResponse,
             summary="Prometheus metrics (docs/operations.md)")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=METRICS_TYPE,
                        headers={"Cache-Control": "no-store"})

    if web is not None:
        web.install(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    document_errors_as_sent(app)
    return app


def document_errors_as_sent(app: FastAPI) -> None:
    """The OpenAPI document says what the routes send: FastAPI lists 422 for every route with
    parameters, but a bad parameter or body is answered 400 with the JSON error object, and an
    error is that JSON object whatever the route's own media type."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": "Malformed request or parameter"})
                for status, response in responses.items():
                    if int(status) >= 400:
                        response["content"] = dict(error_body)
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


MAX_IDEMPOTENCY_KEY = 255


def check_idempotency_key(value: str | None) -> str | None:
    """Visible ASCII, at most 255 characters (draft-ietf-httpapi-idempotency-key-header)."""
    if value is None:
        return None
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY or not all(33 <= ord(c) < 127 for c in value):
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII "
                             "characters")
    return value


def token_origin(token: ApiToken) -> Origin | None:
    """What a statement minted with an exchanged token carries: its publisher's provenance."""
    if token.publisher is None or token.origin is None:
        return None
    return Origin(publisher=token.publisher, repository=token.origin.get("repository"),
                  provenance=dict(token.origin["provenance"]),
                  ci_claims=dict(token.origin["ci_claims"]))


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (RFC 6749 section 4.1.3 style); a
    parameter given twice is refused (RFC 6749 section 3.2)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"parameter {name!r} is given more than once")
        form[name] = value
    return form


def _maintenance_interval(authority: Authority) -> float:
    # Maintenance runs at least as often as verifiers refresh the JWKS, at most every minute.
    return min(60.0, max(1.0, float(authority.config.service.jwks_max_age)))


def worker_app() -> FastAPI:
    """The application of one worker of ``issuer serve --workers N`` (a process of its own:
    its own authority over the configuration ``serve`` resolved, limits in the database)."""
    authority = Authority.from_config()
    return create_app(authority, maintenance_interval=_maintenance_interval(authority),
                      shared_limits=True)


def worker_app_json_log() -> ASGIApp:
    """A worker's application with one JSON log line per request (``--log-format json``)."""
    return RequestLog(worker_app())


def serve(authority: Authority, host: str, port: int,
          log_level: Literal["info", "warning"] = "info", access_log: bool = True,
          log_format: LogFormat = "text", sock: socket.socket | None = None,
          workers: int = 1) -> None:
    """Run the service under uvicorn until interrupted, on ``sock`` or on ``host:port``
    (docs/operations.md: logs, reverse proxy); with ``workers`` > 1, that many processes
    share the socket and the database (docs/operations.md)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock = sock or listen(host, port)
    options: dict[str, Any] = dict(host=host, port=port, log_level=log_level,
                                   log_config=log_config(log_format),
                                   access_log=access_log and log_format == "text",
                                   server_header=False, proxy_headers=False)
    json_requests = access_log and log_format == "json"
    tail = AuditTail(authority)  # one process logs the audit events, however many serve
    tail.thread.start()
    try:
        if workers > 1:
            os.environ["ISSUER_CONFIG"] = str(authority.config.path)  # what each worker loads
            factory = "worker_app_json_log" if json_requests else "worker_app"
            config = uvicorn.Config(f"issuer.service.app:{factory}", factory=True,
                                    workers=workers, **options)
            Multiprocess(config, sockets=[sock]).run()
            return
        app: ASGIApp = create_app(authority,
                                  maintenance_interval=_maintenance_interval(authority))
        if json_requests:
            app = RequestLog(app)  # uvicorn's access line is text; this one is a JSON object
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
    finally:
        tail.stop.set()
        tail.thread.join(timeout=10)
        sock.close()
