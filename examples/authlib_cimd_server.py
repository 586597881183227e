"""A small authorization server that accepts clients identified by a Client ID Metadata
Document carrying a software statement (docs/cimd.md), with no registration step.

It is Authlib's own authorization code grant (RFC 6749 section 4.1, PKCE required: RFC 7636)
whose ``query_client`` resolves an https ``client_id`` with this project's
:class:`~issuer.verifier.cimd.ClientIdResolver`: the document is fetched as the draft requires,
its ``software_statement`` verified against the trusted issuer (status included), and the
client's redirect URIs, grant and response types taken from the checked metadata. Public
clients (``token_endpoint_auth_method = "none"``) only, to stay small. Consent is automatic for a
demo user; the disagreements found between document and statement are printed.

Run it against a running issuer (`make run` serves one on 127.0.0.1:8000)::

    .venv/bin/python examples/authlib_cimd_server.py --issuer http://127.0.0.1:8000 \\
        --port 9001 --unsafe-allow-loopback

then send a browser to ``/authorize?response_type=code&client_id=<document URL>&...``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from issuer.core.errors import IssuerError
from issuer.verifier import ClientIdResolver, StatementVerifier, TrustedIssuer


@dataclass
class CimdClient(ClientMixin):  # type: ignore[misc]
    """A client known only by its checked metadata document."""

    client_id: str
    metadata: dict[str, Any]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.metadata.get("redirect_uris") or []
        return str(uris[0]) if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(str(self.metadata.get("scope", "")).split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in (self.metadata.get("redirect_uris") or [])  # exact match

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # a published document never carries a secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return bool(method == "none" == self.metadata.get("token_endpoint_auth_method", "none"))

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.metadata.get("response_types", ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.metadata.get("grant_types", ["authorization_code"])


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires: float = field(default_factory=lambda: time.time() + 60)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: dict[str, str],
                 values: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self._values = values
        self.payload = BasicOAuth2Payload(values)

    @property
    def args(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.uri).query))

    @property
    def form(self) -> dict[str, str]:
        return self._values


class Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server over a :class:`ClientIdResolver`: requests in, responses out."""

    def __init__(self, resolver: ClientIdResolver, log: list[dict[str, Any]]) -> None:
        super().__init__(scopes_supported=None)
        self.resolver = resolver
        self.log = log
        self.codes: dict[str, Code] = {}
        self.tokens: list[dict[str, Any]] = []
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32)))

    def query_client(self, client_id: str) -> CimdClient:
        try:
            client = self.resolver.resolve(client_id)
        except IssuerError as exc:
            # Never redirect for an unknown client: its redirect URIs are unknown too
            # (RFC 6749 section 4.1.2.1).
            raise InvalidClientError(description=exc.description) from None
        decision = {"client_id": client_id, "disagreements": [
            d.as_json() for d in client.disagreements]}
        if client.statement is not None:
            decision.update(statement_issuer=client.statement.issuer,
                            statement_digest=client.statement.digest)
        self.log.append(decision)
        print(json.dumps(decision), file=sys.stderr)
        return CimdClient(client_id, client.metadata)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.tokens.append({**token, "client_id": request.client.get_client_id()})

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.server.codes[code] = Code(
            code, request.client.get_client_id(), request.payload.redirect_uri,
            request.scope or "", request.user, request.payload.data.get("code_challenge"),
            request.payload.data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: CimdClient) -> Code | None:
        found: Code | None = self.server.codes.get(code)
        if found and found.client_id == client.get_client_id() and found.expires > time.time():
            return found
        return None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


def create_app(resolver: ClientIdResolver) -> FastAPI:
    """The example authorization server, resolving clients with ``resolver``."""
    decisions: list[dict[str, Any]] = []
    server = Server(resolver, decisions)
    server.register_grant(CodeGrant, [CodeChallenge(required=True)])
    app = FastAPI(title="Example authorization server (Authlib + CIMD)")
    app.state.server = server
    app.state.decisions = decisions

    def answer(status: int, body: Any, headers: Any) -> Response:
        headers = dict(headers or [])
        if isinstance(body, (dict, list)):
            return JSONResponse(body, status_code=status, headers=headers)
        return Response(body or b"", status_code=status, headers=headers)

    @app.get("/.well-known/oauth-authorization-server")
    def metadata() -> dict[str, Any]:
        return {"client_id_metadata_document_supported": True,  # CIMD section 5
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"]}

    @app.get("/authorize")
    def authorize(request: Request) -> Response:
        oauth = _Request("GET", str(request.url), dict(request.headers),
                         dict(request.query_params))
        try:
            grant = server.get_consent_grant(oauth, end_user="demo-user")
        except OAuth2Error as error:  # unknown client or redirect URI: shown, never redirected
            return JSONResponse(dict(error.get_body()), status_code=error.status_code)
        return answer(*server.create_authorization_response(oauth, grant_user="demo-user",
                                                            grant=grant))

    @app.post("/token")
    async def token(request: Request) -> Response:
        # application/x-www-form-urlencoded (RFC 6749 section 4.1.3), parsed without extras
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        oauth = _Request("POST", str(request.url), dict(request.headers), form)
        return answer(*server.create_token_response(oauth))

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issuer", required=True, help="the trusted statement issuer (iss)")
    parser.add_argument("--jwks-uri", default=None, help="default: <issuer>/.well-known/jwks.json")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--unsafe-allow-loopback", action="store_true",
                        help="development: accept client ids on loopback (http included)")
    args = parser.parse_args()
    verifier = StatementVerifier(trusted=[TrustedIssuer(
        issuer=args.issuer, jwks_uri=args.jwks_uri or f"{args.issuer}/.well-known/jwks.json")])
    resolver = ClientIdResolver(verifier, unsafe_allow_loopback=args.unsafe_allow_loopback)
    uvicorn.run(create_app(resolver), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
