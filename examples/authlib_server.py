"""A small authorization server that registers clients presenting software statements.

It is Authlib's own ``ClientRegistrationEndpoint`` (RFC 7591) with this project's verifier
mixed in, served by FastAPI. Clients are kept in memory; the audit fields of every decision are
printed as JSON lines.

Run it against a running issuer (`make run` serves one on 127.0.0.1:8000)::

    .venv/bin/python examples/authlib_server.py --issuer http://127.0.0.1:8000 --port 9000

or against a staging copy of an issuer (its ``iss`` is the production URL, it is served
elsewhere: keys, historical keys and status lists are fetched from ``--base-url``)::

    .venv/bin/python examples/authlib_server.py --issuer https://connectors.example.com \\
        --base-url http://127.0.0.1:8000 --port 9000

and register a client with a statement the issuer minted::

    curl -s -X POST http://127.0.0.1:9000/register -H 'Content-Type: application/json' \\
      -d '{"software_statement": "<statement>", "client_name": "ignored: the statement wins"}'
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from issuer.verifier import Registrar, RegistrationPolicy, StatementVerifier, TrustedIssuer
from issuer.verifier.authlib import SoftwareStatementRegistration


class _Payload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class Server(AuthorizationServer):  # type: ignore[misc]
    """The framework glue Authlib asks of an integration: requests in, responses out."""

    def create_json_request(self, request: tuple[str, str, dict[str, str], Any]) -> JsonRequest:
        method, uri, headers, body = request
        json_request = JsonRequest(method, uri, headers)
        json_request.payload = _Payload(body)
        return json_request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class RegistrationEndpoint(SoftwareStatementRegistration, ClientRegistrationEndpoint):  # type: ignore[misc]
    """Open registration (RFC 7591 section 3: no initial access token), statements required."""

    def __init__(self, registrar: Registrar, clients: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.registrar = registrar
        self.clients = clients

    def authenticate_token(self, request: Any) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return {
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt",
                                                      "client_secret_basic"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "client_credentials"],
            "response_types_supported": ["code"],
        }

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any],
                    request: Any) -> dict[str, Any]:
        client = {**client_info, **client_metadata,
                  "registration_audit": request.registration.audit}
        self.clients[client_info["client_id"]] = client
        return client


def create_app(issuer: str, jwks_uri: str | None = None,
               policy: RegistrationPolicy | None = None,
               verifier: StatementVerifier | None = None,
               base_url: str | None = None) -> FastAPI:
    """The example authorization server, trusting statements of ``issuer`` (served from
    ``base_url`` when that is a staging copy of the issuer)."""
    verifier = verifier or StatementVerifier(trusted=[TrustedIssuer(
        issuer=issuer, jwks_uri=jwks_uri or f"{issuer}/.well-known/jwks.json",
        base_url=base_url)])
    decisions: list[dict[str, Any]] = []

    def record(audit: dict[str, Any]) -> None:
        decisions.append(audit)
        print(json.dumps(audit), file=sys.stderr)

    registrar = Registrar(verifier, policy or RegistrationPolicy(), on_decision=record)
    clients: dict[str, dict[str, Any]] = {}
    server = Server()
    server.register_endpoint(RegistrationEndpoint(registrar, clients))
    app = FastAPI(title="Example authorization server (Authlib + software statements)")
    app.state.clients = clients
    app.state.decisions = decisions

    @app.post("/register")
    async def register(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            return JSONResponse({"error": "invalid_client_metadata",
                                 "error_description": "the request body is not JSON"},
                                status_code=400)
        status, payload, headers = server.create_endpoint_response(
            "client_registration", ("POST", str(request.url), dict(request.headers), body))
        return JSONResponse(payload, status_code=status, headers=dict(headers or []))

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issuer", required=True, help="the trusted statement issuer (iss)")
    parser.add_argument("--jwks-uri", default=None, help="default: <issuer>/.well-known/jwks.json")
    parser.add_argument("--base-url", default=None,
                        help="fetch the issuer's keys and status lists from here instead (a "
                             "staging copy of the issuer that signs with the same iss)")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(create_app(args.issuer, args.jwks_uri, base_url=args.base_url),
                host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
