"""The web view for auditors and operators (docs/web.md): server-rendered, read-only pages
under ``/ui/`` over the same Authority and the same queries as the JSON API.

No script runs on any page (the Content-Security-Policy allows none), so every page works
the same with JavaScript off. Every value from a statement or a template reaches the page
through Jinja2's autoescaping: claims are attacker-influenced text.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer.core.authority import Authority
from issuer.core.clock import format_duration, rfc3339
from issuer.core.config import RateLimit
from issuer.core.encoding import statement_digest
from issuer.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    IssuerError,
    NotFound,
)
from issuer.core.search import StatementQuery, search
from issuer.core.templates import check_name
from issuer.core.tokens import ApiToken
from issuer.log.tlog import b64, verify_consistency_offline, verify_inclusion_offline
from issuer.service.ratelimit import RateLimiter
from issuer.service.web import timeline
from issuer.service.web.sessions import COOKIE, PATH, SIGN_IN_COOKIE, Session, Sessions, same
from issuer.store.audit import STATUS_FILTERS, StatementRecord
from issuer.verifier.jose import read_header

HERE = Path(__file__).parent
PAGE_SIZE = 50
FORM_TYPE = "application/x-www-form-urlencoded"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: Sign-in attempts per client address: each one counts, success or not, so guessing tokens
#: is as slow as the API's per-token limit makes using one.
SIGN_IN_LIMIT = RateLimit(count=10, period=60)
#: No script, no inline style, no frames, forms only to ourselves (CSP Level 3).
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"),
           (b"cache-control", b"no-store")]


class SecurityHeaders:
    """Adds the page headers to every response under ``/ui`` (pages, errors, redirects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _ours(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {h[0] for h in HEADERS}
                message["headers"] = [h for h in message.get("headers", [])
                                      if h[0].lower() not in names] + HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def _ours(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


class SignInRequired(Exception):
    """No usable session: the page answers with a redirect to the sign-in form, which comes
    back to ``next_path``; ``ended``: there was a session, and it expired or lost its token."""

    def __init__(self, next_path: str, ended: bool) -> None:
        super().__init__("sign in")
        self.next_path = next_path
        self.ended = ended


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the API token the session was opened with."""

    token: ApiToken
    session: Session

    @property
    def admin(self) -> bool:
        return self.token.role == "admin"


def _when(t: int | None) -> str:
    return "" if t is None else rfc3339(t)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class WebView:
    """The pages, their sessions and their error pages, installed into the service's app."""

    def __init__(self, authority: Authority, limiter: RateLimiter) -> None:
        self.authority = authority
        self.limiter = limiter
        self.sessions = Sessions(authority.clock, authority.config.service.session_lifetime)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True), trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(when=_when, json=_json, duration=format_duration)

    # --- rendering -------------------------------------------------------------------------

    def page(self, request: Request, page_file: str, http_status: int = 200,
             headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
        viewer = context.pop("viewer", None)
        html = self.env.get_template(page_file).render(
            viewer=viewer, csrf=viewer.session.csrf if viewer else None,
            path=request.url.path, **context)
        return HTMLResponse(html, status_code=http_status, headers=headers)

    def error_page(self, request: Request, error: IssuerError) -> Response | None:
        """The page for an error under /ui (a 404 or 400 page, never a trace); None elsewhere."""
        if not _ours(request.url.path):
            return None
        headers = {}
        retry = getattr(error, "retry_after", None)
        if retry is not None:
            headers["Retry-After"] = str(retry)
        status = error.status if error.status in (400, 401, 403, 404, 409, 413, 429, 503) else 500
        return self.page(request, "error.html", http_status=status, headers=headers,
                         error=error, description=error.description)

    # --- access ----------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer:
        """The signed-in viewer, or SignInRequired; each page view counts against the token's
        rate limit like an API call."""
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        cookie = request.cookies.get(COOKIE)
        session, expired = self.sessions.find(cookie)
        if session is None:
            raise SignInRequired(here, ended=expired)
        try:
            token = self.authority.tokens.get(session.token_name)
        except NotFound:
            token = None
        if token is None or token.revoked_at is not None or not token.may_audit():
            self.sessions.close(cookie)
            raise SignInRequired(here, ended=True)
        self.limiter.check(token.name, token.limit(self.authority.config.service.rate_limit))
        return Viewer(token, session)

    def sign_in_page(self, request: Request, *, note: str | None = None, status: int = 200,
                     next_path: str = "") -> Response:
        csrf = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
        response = self.page(request, "sign_in.html", http_status=status, note=note,
                             sign_in_csrf=csrf, next_path=next_path)
        self._cookie(request, response, SIGN_IN_COOKIE, csrf, max_age=3600)
        return response

    def sign_in(self, request: Request, token: str, csrf: str, next_path: str) -> Response:
        if not same(csrf, request.cookies.get(SIGN_IN_COOKIE) or "\0") or \
                not _same_origin(request, self.authority.config.issuer):
            return self.sign_in_page(request, status=400, next_path=next_path,
                                     note="The sign-in form expired; try again.")
        client = request.client.host if request.client else "unknown"
        self.limiter.check(f"sign-in:{client}", SIGN_IN_LIMIT)
        try:
            api_token = self.authority.tokens.authenticate(token.strip())
        except InvalidToken:
            return self.sign_in_page(request, status=401, next_path=next_path,
                                     note="Sign-in refused: that token is not valid.")
        if not api_token.may_audit():
            return self.sign_in_page(request, status=403, next_path=next_path,
                                     note="Sign-in refused: only auditor and admin tokens may "
                                          "use the web view.")
        cookie, _ = self.sessions.open(api_token.name)
        target = next_path if _local(next_path) else f"{PATH}/statements"
        response = RedirectResponse(target, status_code=303)
        self._cookie(request, response, COOKIE, cookie,
                     max_age=self.authority.config.service.session_lifetime)
        self._forget(request, response, SIGN_IN_COOKIE)
        return response

    def sign_out(self, request: Request, csrf: str) -> Response:
        cookie = request.cookies.get(COOKIE)
        session, _ = self.sessions.find(cookie)
        issuer = self.authority.config.issuer
        if session is not None and (not same(csrf, session.csrf)
                                    or not _same_origin(request, issuer)):
            raise InvalidRequest("sign-out form token does not match this session")
        self.sessions.close(cookie)
        response = RedirectResponse(f"{PATH}/sign-in?signed_out=1", status_code=303)
        self._forget(request, response, COOKIE)
        return response

    def _secure(self, request: Request) -> bool:
        """Cookies are Secure over https, and behind a TLS-terminating proxy: the issuer URL
        is https and the request came for a name other than a loopback one."""
        if request.url.scheme == "https":
            return True
        host = (request.url.hostname or "").lower()
        return self.authority.config.issuer.startswith("https://") and host not in LOOPBACK

    def _cookie(self, request: Request, response: Response, name: str, value: str,
                max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True,
                            samesite="strict", secure=self._secure(request))

    def _forget(self, request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path=PATH, httponly=True, samesite="strict",
                               secure=self._secure(request))

    # --- pages -------------------------------------------------------------------------------

    def statements(self, request: Request) -> Response:
        viewer = self.viewer(request)
        query = StatementQuery.parse(request.query_params, self.authority.now())
        page = search(self.authority, query, limit=PAGE_SIZE,
                      cursor=request.query_params.get("cursor") or None)
        rows = [(record, self.authority.statement_status(record.software_statement))
                for record in page.records]
        given = dict(query.given)
        next_url = (f"{PATH}/statements?{urlencode({**given, 'cursor': page.next_cursor})}"
                    if page.next_cursor else None)
        first_url = f"{PATH}/statements?{urlencode(given)}" if request.query_params.get(
            "cursor") else None
        return self.page(request, "statements.html", viewer=viewer, rows=rows, given=given,
                         statuses=STATUS_FILTERS, next_url=next_url,
                         first_url=first_url, templates=self.authority.templates.names())

    def statement(self, request: Request, ref: str) -> Response:
        viewer = self.viewer(request)
        record = self.authority.audit.statement(ref)
        return self.page(request, "statement.html", viewer=viewer, record=record,
                         header=read_header(record.software_statement),
                         status=self.authority.statement_status(record.software_statement),
                         proof=self._inclusion(record))

    def _inclusion(self, record: StatementRecord) -> dict[str, Any]:
        """The statement's log entry proven included in the tree the newest signed checkpoint
        commits to (RFC 9162 section 2.1.3.2), the way an offline verifier would check it."""
        log = self.authority.log
        try:
            entry = self.authority.audit.entry(record.log_index)
            issued = json.loads(entry)
            if issued.get("type") != "statement.issued" or statement_digest(
                    issued["data"]["software_statement"]) != record.digest:
                raise InvalidRequest(f"log entry {record.log_index} is not this statement's "
                                     "issuance")
            proof = log.inclusion(record.log_index, entry)
            head = verify_inclusion_offline(proof.checkpoint, log.verifier.verifier_key(), entry,
                                            proof.log_index, list(proof.hashes))
        except (IssuerError, KeyError, TypeError, ValueError) as exc:
            return {"verified": False, "reason": str(exc)}
        return {"verified": True, "index": proof.log_index, "tree_size": head.size,
                "root_hash": b64(head.root_hash), "hashes": [b64(h) for h in proof.hashes],
                "checkpoint": proof.checkpoint}

    def keys(self, request: Request) -> Response:
        viewer = self.viewer(request)
        now = self.authority.now()
        keys = self.authority.keystore.keys()
        return self.page(request, "keys.html", viewer=viewer, history=self.authority.keys.history(),
                         jwks={k.kid: _json(k.jwk()) for k in keys},
                         picture=timeline.layout(keys, now),
                         rotation_due=self.authority.keys.rotation_due_at())

    def templates(self, request: Request) -> Response:
        viewer = self.viewer(request)
        listed: list[tuple[str, str, str | None]] = []
        for name in self.authority.templates.names():
            try:
                listed.append((name, self.authority.templates.load(name).description, None))
            except IssuerError as exc:
                listed.append((name, "", exc.description))
        return self.page(request, "templates.html", viewer=viewer, listed=listed)

    def template(self, request: Request, name: str) -> Response:
        viewer = self.viewer(request)
        versions = self._versions(name)
        current, problem = None, None
        try:
            current = self.authority.templates.load(name)
        except IssuerError as exc:
            if not versions:
                raise
            problem = exc.description
        return self.page(request, "template.html", viewer=viewer, name=name, current=current,
                         problem=problem, versions=list(reversed(versions)))

    def template_version(self, request: Request, name: str, digest: str) -> Response:
        viewer = self.viewer(request)
        versions = self._versions(name)
        found = next((v for v in versions if v["digest"] == digest), None)
        if found is None:
            raise NotFound(f"template {name!r} has no recorded version {digest!r}")
        return self.page(request, "template_version.html", viewer=viewer, name=name,
                         version=found)

    def _versions(self, name: str) -> list[dict[str, Any]]:
        """The recorded versions of a template, oldest first, each with what it changed."""
        check_name(name)
        versions = []
        for event in self.authority.audit.template_history(name):
            data = event.data
            versions.append({"digest": data.get("digest") or data.get("new_digest"),
                             "previous": data.get("old_digest"), "time": event.time,
                             "actor": event.actor, "log_index": event.idx,
                             "content": data.get("content", {}),
                             "changes": data.get("changes", [])})
        return versions

    def log_page(self, request: Request) -> Response:
        viewer = self.viewer(request)
        log = self.authority.log
        head, note = log.latest()
        sizes = [row[0] for row in self.authority.audit.read(
            "SELECT tree_size FROM log_checkpoints ORDER BY tree_size DESC LIMIT 20")]
        consistency = self._consistency(request.query_params)
        return self.page(request, "log.html", viewer=viewer, head=head, note=note,
                         root_hash=b64(head.root_hash), log_key=log.verifier.verifier_key(),
                         sizes=sizes, consistency=consistency)

    def _consistency(self, params: Mapping[str, str]) -> dict[str, Any] | None:
        """RFC 9162 section 2.1.4 proof between two checkpointed sizes, checked offline."""
        first_text, second_text = params.get("first", ""), params.get("second", "")
        if not first_text and not second_text:
            return None
        if not (first_text.isdigit() and second_text.isdigit()):
            raise InvalidRequest("first and second must both be tree sizes (whole numbers)")
        first, second = int(first_text), int(second_text)
        log = self.authority.log
        proof = log.consistency(first, second)
        try:
            old_note, new_note = log.note_at(first), log.note_at(second)
        except NotFound as exc:
            raise InvalidRequest(f"{exc.description}; pick sizes from the list") from None
        verify_consistency_offline(old_note, new_note, log.verifier.verifier_key(), proof)
        return {"first": first, "second": second, "hashes": [b64(h) for h in proof]}

    def tokens(self, request: Request) -> Response:
        viewer = self.viewer(request)
        if not viewer.admin:
            raise InsufficientScope(f"token '{viewer.token.name}' ({viewer.token.role}) may not "
                                    "list tokens; an admin token may")
        return self.page(request, "tokens.html", viewer=viewer,
                         tokens=self.authority.tokens.list(),
                         publishers=self.authority.publishers)

    # --- wiring ------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """Add the routes under /ui, its static files and its headers to ``app``."""
        web = self

        async def sign_in_required(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, SignInRequired)
            query = {"next": exc.next_path, **({"expired": "1"} if exc.ended else {})}
            return RedirectResponse(f"{PATH}/sign-in?{urlencode(query)}", status_code=303)

        app.add_exception_handler(SignInRequired, sign_in_required)

        def get(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return app.get(path, include_in_schema=False, response_class=HTMLResponse)

        def post(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return app.post(path, include_in_schema=False, response_class=HTMLResponse)

        @get(PATH)
        @get(f"{PATH}/")
        def home() -> Response:
            return RedirectResponse(f"{PATH}/statements", status_code=303)

        @get(f"{PATH}/sign-in")
        def sign_in_form(request: Request) -> Response:
            params = request.query_params
            note = ("Your session ended; sign in again." if params.get("expired")
                    else "Signed out." if params.get("signed_out") else None)
            return web.sign_in_page(request, note=note, next_path=params.get("next", ""))

        @post(f"{PATH}/sign-in")
        async def sign_in(request: Request) -> Response:
            form = await _form(request)
            return await run_in_threadpool(web.sign_in, request, form.get("token", ""),
                                           form.get("csrf", ""), form.get("next", ""))

        @post(f"{PATH}/sign-out")
        async def sign_out(request: Request) -> Response:
            form = await _form(request)
            return web.sign_out(request, form.get("csrf", ""))

        pages: list[tuple[str, Callable[..., Response]]] = [
            ("/statements", web.statements), ("/statements/{ref}", web.statement),
            ("/keys", web.keys), ("/templates", web.templates),
            ("/templates/{name}", web.template),
            ("/templates/{name}/versions/{digest}", web.template_version),
            ("/log", web.log_page), ("/tokens", web.tokens)]
        for route, handler in pages:
            get(PATH + route)(handler)
        app.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
        app.add_middleware(SecurityHeaders)


async def _form(request: Request) -> dict[str, str]:
    """An HTML form post (application/x-www-form-urlencoded, within the service's body limit):
    the first value of each field."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        raise InvalidRequest(f"expected a form post ({FORM_TYPE})")
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form post is malformed") from None
    return {name: values[0] for name, values in fields.items()}


def _local(path: str) -> bool:
    """Only our own pages are redirect targets after sign-in (no open redirect)."""
    return _ours(path.split("?")[0]) and not path.startswith("//") and "\\" not in path \
        and "/sign-" not in path


def _same_origin(request: Request, issuer: str) -> bool:
    """A form post from our own pages: browsers send Origin on POST (Referrer-Policy
    same-origin keeps it from being "null"); one that is neither the request's own origin nor
    the issuer's (the public name, behind a proxy) is a cross-site request (CSRF), whatever the
    cookies say."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    parts = urlsplit(issuer)
    return origin in (f"http://{host}", f"https://{host}", f"{parts.scheme}://{parts.netloc}")
