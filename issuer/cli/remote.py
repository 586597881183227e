"""The client side of a served issuer: ``issuer mint --remote URL`` (docs/pipelines.md).

A pipeline authenticates with an API token from a file, or with no stored secret at all: its
CI's OIDC ID token (GitHub Actions' ``ACTIONS_ID_TOKEN_REQUEST_URL``; GitLab's ``id_tokens``
as ``SSI_ID_TOKEN``) is exchanged for a short-lived minter token (RFC 8693). Every mint carries
an ``Idempotency-Key``: derived from the CI run and the request, so a retried job gets the
statement its first attempt got, and reused by the client's own retries.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from issuer.core.errors import IssuerError, UsageError
from issuer.core.metadata import is_loopback_host
from issuer.core.publishers import GRANT_TYPE, ID_TOKEN_TYPE
from issuer.core.statements import MintRequest

TIMEOUT = 30.0
MAX_RESPONSE = 1024 * 1024
#: Statuses a retry may cure; the same Idempotency-Key makes the retry safe.
RETRIED = (429, 502, 503, 504)
ATTEMPTS = 3
#: GitLab CI: the variable a job's ``id_tokens`` declares for the issuer.
GITLAB_TOKEN_VAR = "SSI_ID_TOKEN"


class RemoteError(IssuerError):
    """The remote issuer refused, or could not be reached."""

    error = "remote_error"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A credential is never sent on to wherever a redirect points."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused",
                                     headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_url(url: str, what: str) -> str:
    """https, or http only on loopback: a bearer token never crosses a network in clear."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname or "")):
        raise UsageError(f"{what} {url!r} must be an https URL (http only on loopback)")
    return url.rstrip("/")


def request(method: str, url: str, *, headers: Mapping[str, str],
            body: bytes | None = None) -> Response:
    """One HTTP exchange, bounded in time and size; HTTP error statuses are responses."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as got:
            return Response(got.status, {k.lower(): v for k, v in got.headers.items()},
                            got.read(MAX_RESPONSE))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()},
                        exc.read(MAX_RESPONSE) if exc.fp else b"")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RemoteError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None


def _json(response: Response, url: str) -> dict[str, Any]:
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise RemoteError(f"{url} answered HTTP {response.status} without a JSON object")
    if response.status >= 400:
        raise RemoteError(f"{url}: {value.get('error_description', 'refused')} "
                          f"({value.get('error', response.status)})")
    return value


def ambient_id_token(audience: str, env: Mapping[str, str]) -> str:
    """The CI's OIDC ID token for ``audience``, from the job's environment."""
    url, bearer = env.get("ACTIONS_ID_TOKEN_REQUEST_URL"), env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if url and bearer:
        # GitHub Actions: the runner's token service mints one per request for the audience.
        sep = "&" if "?" in url else "?"
        got = request("GET", f"{url}{sep}{urlencode({'audience': audience})}",
                      headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"})
        value = _json(got, "the GitHub Actions ID token service").get("value")
        if not isinstance(value, str) or not value:
            raise RemoteError("the GitHub Actions ID token service returned no token")
        return value
    if env.get(GITLAB_TOKEN_VAR):
        return env[GITLAB_TOKEN_VAR].strip()
    if env.get("GITHUB_ACTIONS") == "true":
        raise UsageError("no GitHub Actions ID token: give the job `permissions: id-token: "
                         "write` (docs/pipelines.md)")
    if env.get("GITLAB_CI") == "true":
        raise UsageError(f"no GitLab ID token: declare `id_tokens: {GITLAB_TOKEN_VAR}: aud: "
                         f"{audience}` in the job (docs/pipelines.md)")
    raise UsageError(f"--oidc found no CI ID token (GitHub Actions with id-token: write, or "
                     f"${GITLAB_TOKEN_VAR})")


def default_idempotency_key(req: MintRequest, env: Mapping[str, str]) -> str:
    """Stable across retries of one CI job for one request; random outside CI."""
    if env.get("GITHUB_RUN_ID"):
        run = ("github", env.get("GITHUB_REPOSITORY"), env["GITHUB_RUN_ID"], env.get("GITHUB_JOB"))
    elif env.get("CI_PIPELINE_ID"):
        run = ("gitlab", env.get("CI_PROJECT_PATH"), env["CI_PIPELINE_ID"], env.get("CI_JOB_NAME"))
    else:
        return f"cli-{uuid.uuid4()}"
    text = json.dumps([*run, req.digest()])
    return "ci-" + hashlib.sha256(text.encode()).hexdigest()


class RemoteIssuer:
    """A served issuer, spoken to over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url, "--remote")

    def audience(self) -> str:
        """The ``aud`` the issuer's token exchange wants, from its metadata document."""
        doc = _json(request("GET", f"{self.url}/.well-known/software-statement-issuer",
                            headers={"Accept": "application/json"}), self.url)
        value = doc.get("trusted_publishing_audience") or doc.get("issuer")
        if not isinstance(value, str):
            raise RemoteError(f"{self.url} publishes no issuer metadata")
        return value

    def exchange(self, id_token: str) -> str:
        """RFC 8693 token exchange: the CI's ID token for a short-lived minter token."""
        body = urlencode({"grant_type": GRANT_TYPE, "subject_token": id_token,
                          "subject_token_type": ID_TOKEN_TYPE}).encode()
        got = request("POST", f"{self.url}/v1/oidc/token", body=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded",
                               "Accept": "application/json"})
        token = _json(got, f"{self.url}/v1/oidc/token").get("access_token")
        if not isinstance(token, str):
            raise RemoteError(f"{self.url}/v1/oidc/token returned no access_token")
        return token

    def mint(self, req: MintRequest, bearer: str, key: str) -> dict[str, Any]:
        """``POST /v1/statements``, retried with the same Idempotency-Key when that may help."""
        body = json.dumps({"template": req.template, "claims": req.claims}).encode()
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json",
                   "Accept": "application/json", "Idempotency-Key": key}
        url = f"{self.url}/v1/statements"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                got = request("POST", url, headers=headers, body=body)
            except RemoteError:
                if attempt == ATTEMPTS:
                    raise
                time.sleep(attempt)  # a client backing off between network retries
                continue
            if got.status not in RETRIED or attempt == ATTEMPTS:
                break
            retry_after = got.headers.get("retry-after", "")
            time.sleep(min(30, int(retry_after)) if retry_after.isdigit() else attempt)
        result = _json(got, url)
        if not isinstance(result.get("software_statement"), str):
            raise RemoteError(f"{url} returned no software_statement")
        return result


def read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise UsageError(f"--token-file {path} is empty")
    return text
