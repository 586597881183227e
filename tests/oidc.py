"""A CI's OpenID Connect issuer on loopback, for trusted publishing tests: a discovery
document, a JWKS that counts its fetches, keys that rotate, ID tokens with GitHub- and
GitLab-shaped claims, and GitHub Actions' ID token request endpoint."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

Key = RSAKey | ECKey


def new_key(alg: str = "RS256") -> Key:
    key: Key = RSAKey.generate_key(2048) if alg.startswith("RS") else ECKey.generate_key("P-256")
    key.ensure_kid()
    return key


class OidcIssuer:
    """A running CI OIDC issuer; ``url`` is its ``iss``."""

    def __init__(self) -> None:
        self.keys: list[Key] = [new_key()]
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.serve_empty_jwks = False
        self.request_token = secrets.token_urlsafe(16)
        #: Claims the GitHub ID token endpoint puts in the tokens it hands out.
        self.actions_claims: dict[str, Any] = {}
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path)
                if path.path == "/.well-known/openid-configuration":
                    issuer.discovery_fetches += 1
                    self._json({"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks",
                                "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
                elif path.path == "/jwks":
                    issuer.jwks_fetches += 1
                    keys = [] if issuer.serve_empty_jwks else [k.as_dict(private=False)
                                                               for k in issuer.keys]
                    self._json({"keys": keys}, {"Cache-Control": "max-age=300"})
                elif path.path == "/actions-token":
                    if self.headers.get("Authorization") != f"Bearer {issuer.request_token}":
                        self._json({"message": "bad request token"}, status=401)
                        return
                    audience = parse_qs(path.query).get("audience", [""])[0]
                    claims = {**issuer.actions_claims, "aud": audience}
                    self._json({"value": issuer.sign(github_claims(issuer.url, time.time(),
                                                                   **claims))})
                else:
                    self._json({"error": "not found"}, status=404)

            def _json(self, body: Any, headers: dict[str, str] | None = None,
                      status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def rotate(self) -> Key:
        """A new signing key replaces the old one in the JWKS."""
        self.keys = [new_key()]
        return self.keys[0]

    def sign(self, claims: dict[str, Any], key: Key | None = None, alg: str | None = None,
             header: dict[str, Any] | None = None) -> str:
        key = key or self.keys[0]
        alg = alg or ("RS256" if isinstance(key, RSAKey) else "ES256")
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT", **(header or {})}, claims,
                          key, algorithms=[alg])


@contextmanager
def oidc_issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer()
    issuer.thread.start()
    try:
        yield issuer
    finally:
        issuer.server.shutdown()
        issuer.server.server_close()


def github_claims(iss: str, now: float, **overrides: Any) -> dict[str, Any]:
    """An ID token as GitHub Actions issues one for a tag push of acme/calendar-connector."""
    workflow = "acme/calendar-connector/.github/workflows/release.yml@refs/tags/v1.4.2"
    claims = {
        "iss": iss, "aud": "https://issuer.example.com", "iat": int(now), "nbf": int(now),
        "exp": int(now) + 300, "jti": secrets.token_hex(16),
        "sub": "repo:acme/calendar-connector:environment:release",
        "repository": "acme/calendar-connector", "repository_id": "4242",
        "repository_owner": "acme", "repository_owner_id": "1001",
        "ref": "refs/tags/v1.4.2", "ref_type": "tag", "sha": "a" * 40,
        "workflow_ref": workflow, "job_workflow_ref": workflow,
        "environment": "release", "event_name": "push", "run_id": "987654",
        "run_attempt": "1", "runner_environment": "github-hosted",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def gitlab_claims(iss: str, now: float, **overrides: Any) -> dict[str, Any]:
    """An ID token as GitLab CI issues one for a tag pipeline of acme/desktop-agent."""
    claims = {
        "iss": iss, "aud": "https://issuer.example.com", "iat": int(now), "nbf": int(now),
        "exp": int(now) + 300, "jti": secrets.token_hex(16),
        "sub": "project_path:acme/desktop-agent:ref_type:tag:ref:v2.0.0",
        "project_path": "acme/desktop-agent", "project_id": "77", "namespace_id": "55",
        "namespace_path": "acme", "ref": "v2.0.0", "ref_type": "tag",
        "ref_path": "refs/tags/v2.0.0", "ref_protected": "true", "sha": "b" * 40,
        "ci_config_ref_uri": "gitlab.example.com/acme/desktop-agent//.gitlab-ci.yml@refs/tags/v2.0.0",
        "pipeline_id": "1234", "job_id": "5678", "pipeline_source": "push",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def publishers_toml(github_issuer: str, gitlab_issuer: str | None = None, *,
                    extra: str = "") -> str:
    """issuer.toml tables for a GitHub publisher (and a GitLab one)."""
    text = f'''
[[trusted_publishers]]
name = "calendar-release"
kind = "github"
issuer = "{github_issuer}"
templates = ["mcp-connector"]
[trusted_publishers.claims]
repository = "acme/calendar-connector"
repository_owner_id = "1001"
job_workflow_ref = "acme/calendar-connector/.github/workflows/release.yml@refs/tags/*"
ref = "refs/tags/v*"
environment = "release"
'''
    if gitlab_issuer:
        text += f'''
[[trusted_publishers]]
name = "desktop-release"
kind = "gitlab"
issuer = "{gitlab_issuer}"
templates = ["desktop-agent"]
[trusted_publishers.claims]
project_path = "acme/desktop-agent"
namespace_id = "55"
ci_config_ref_uri = "gitlab.example.com/acme/desktop-agent//.gitlab-ci.yml@refs/tags/*"
ref_path = "refs/tags/v*"
'''
    return text + extra
