"""Trusted publishers: CI OIDC ID tokens verified, then matched to what they may mint.

A release pipeline proves who it is with its CI's own short-lived OpenID Connect ID token
(GitHub Actions, GitLab CI, or any OIDC-speaking CI); ``POST /v1/oidc/token`` (RFC 8693 token
exchange) turns a token that verifies and matches a configured publisher into a short-lived
minter token for that publisher's templates. This module holds the two halves:

- :class:`CiTokenVerifier`: the CI token's signature against its issuer's JWKS (found through
  OpenID Connect Discovery 1.0 section 4, cached, refetched at most once a minute for an
  unknown ``kid``, an empty key set never kept), ``alg`` RS256 or ES256 only, ``aud`` exactly
  the configured audience (a single string, never a list), ``exp``/``iat``/``nbf`` with a small
  leeway, and a ``jti`` to record once (RFC 7519 section 4.1).
- :class:`Kind`: a CI provider described as data, after PyPI's trusted publishers: the claims a
  publisher must pin (immutable owner ids, not only names that can be re-registered), the ones
  it may pin, the ones a token must carry, the comparisons that ignore case, one
  provider-specific rule (where the workflow file must live), and how the statement's
  ``provenance`` claim is read from the token. One function matches any token against any
  publisher; a new CI provider is a new table, not a new code path.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from issuer.core.clock import Clock
from issuer.core.errors import (
    ConfigError,
    InvalidGrant,
    InvalidSoftwareStatement,
    IssuerError,
    UpstreamUnavailable,
)
from issuer.core.metadata import is_loopback_host
from issuer.core.templates import check_name
from issuer.verifier.jose import parse_compact, verify_signature
from issuer.verifier.remote import FetchError, HttpGet, HttpResponse, RemoteJwks, http_get

#: RFC 8693 section 2.1 and 3.
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: The only algorithms a CI ID token may use (GitHub signs RS256, GitLab RS256).
CI_ALGORITHMS = ("RS256", "ES256")
LEEWAY = 30
#: A CI key set is refetched for an unknown kid at most this often (seconds).
MIN_REFRESH = 60.0
MAX_DISCOVERY_BYTES = 256 * 1024
MAX_JTI = 256
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITLAB_ISSUER = "https://gitlab.com"


def _glob(pattern: str, *, fold: bool) -> re.Pattern[str]:
    """``*`` matches any run of characters (``/`` included); everything else is literal."""
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(f"^{body}\\Z", re.IGNORECASE if fold else 0)


def _text(value: Any) -> str | None:
    """A claim as text for matching: strings as they are, integers in decimal, nothing else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# --- CI providers as data -------------------------------------------------------------------

Rule = Callable[["Publisher", Mapping[str, Any]], str | None]


def _github_workflow(publisher: Publisher, claims: Mapping[str, Any]) -> str | None:
    """``job_workflow_ref`` names the workflow file that runs the job; for a reusable workflow
    it differs from ``workflow_ref`` (the caller), and the file may live in another repository
    whose owner the publisher never vetted. Refused unless the publisher allows it."""
    if publisher.allow_reusable_workflows:
        return None
    if claims.get("job_workflow_ref") != claims.get("workflow_ref"):
        return (f"the job runs the reusable workflow {claims.get('job_workflow_ref')!r} "
                f"called from {claims.get('workflow_ref')!r}; this publisher does not allow "
                "reusable workflows (allow_reusable_workflows = true)")
    return None


def _gitlab_config(publisher: Publisher, claims: Mapping[str, Any]) -> str | None:
    """``ci_config_ref_uri`` names the top-level CI file; one from another project is refused
    unless the publisher allows it (the same reasoning as GitHub's reusable workflows)."""
    if publisher.allow_reusable_workflows:
        return None
    uri, project = str(claims.get("ci_config_ref_uri", "")), str(claims.get("project_path", ""))
    # <host>/<project path>//<file>@<ref>: the path between host and "//" is the project's.
    config_project = uri.split("//", 1)[0].partition("/")[2]
    if config_project.lower() != project.lower():
        return (f"the pipeline's CI configuration {uri!r} is not in project {project!r}; this "
                "publisher does not allow a configuration from another project "
                "(allow_reusable_workflows = true)")
    return None


def _github_provenance(claims: Mapping[str, Any]) -> dict[str, str]:
    server = "https://github.com"
    repository, run = claims.get("repository"), claims.get("run_id")
    attempt = claims.get("run_attempt")
    out = {"source_repository_uri": f"{server}/{repository}" if repository else None,
           "source_repository_ref": claims.get("ref"),
           "source_repository_digest": claims.get("sha"),
           "build_signer_uri": f"{server}/{claims['job_workflow_ref']}"
           if claims.get("job_workflow_ref") else None,
           "run_invocation_uri": f"{server}/{repository}/actions/runs/{run}"
           + (f"/attempts/{attempt}" if attempt else "") if repository and run else None}
    return {k: v for k, v in out.items() if isinstance(v, str)}


def _gitlab_provenance(claims: Mapping[str, Any]) -> dict[str, str]:
    server = str(claims.get("iss", "")).rstrip("/")
    project, job = claims.get("project_path"), claims.get("job_id")
    out = {"source_repository_uri": f"{server}/{project}" if project else None,
           "source_repository_ref": claims.get("ref_path"),
           "source_repository_digest": claims.get("sha"),
           "build_signer_uri": f"https://{claims['ci_config_ref_uri']}"
           if claims.get("ci_config_ref_uri") else None,
           "run_invocation_uri": f"{server}/{project}/-/jobs/{job}" if project and job else None}
    return {k: v for k, v in out.items() if isinstance(v, str)}


def _no_provenance(_: Mapping[str, Any]) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Kind:
    """One CI provider's claim table (after PyPI's ``warehouse/oidc/models``)."""

    name: str
    #: The provider's public issuer, used when a publisher names none.
    default_issuer: str | None
    #: Claims every publisher of this kind must pin; immutable ids among them.
    required: tuple[str, ...]
    #: Claims a publisher may pin besides; None: any claim.
    optional: tuple[str, ...] | None
    #: Claims every token must carry, pinned or not (the rule and the provenance read them).
    present: tuple[str, ...]
    #: Claims compared without regard to case (the provider treats their values so).
    folded: frozenset[str] = frozenset()
    rule: Rule | None = None
    provenance: Callable[[Mapping[str, Any]], dict[str, str]] = _no_provenance
    #: The claim that names the source repository in the audit records.
    repository_claim: str | None = None


KINDS: dict[str, Kind] = {
    "github": Kind(
        name="github", default_issuer=GITHUB_ISSUER,
        required=("repository", "repository_owner_id", "job_workflow_ref"),
        optional=("environment", "ref", "ref_type", "repository_id", "repository_owner",
                  "event_name", "workflow_ref", "sub", "runner_environment"),
        present=("sub", "repository", "repository_owner_id", "job_workflow_ref",
                 "workflow_ref", "ref", "sha", "run_id"),
        folded=frozenset({"repository", "repository_owner", "environment"}),
        rule=_github_workflow, provenance=_github_provenance, repository_claim="repository"),
    "gitlab": Kind(
        name="gitlab", default_issuer=GITLAB_ISSUER,
        required=("project_path", "namespace_id", "ci_config_ref_uri"),
        optional=("ref_path", "environment", "project_id", "namespace_path", "ref", "ref_type",
                  "ref_protected", "pipeline_source", "sub", "environment_protected"),
        present=("sub", "project_path", "namespace_id", "ci_config_ref_uri", "ref_path", "sha"),
        folded=frozenset({"project_path", "namespace_path"}),
        rule=_gitlab_config, provenance=_gitlab_provenance, repository_claim="project_path"),
    "generic": Kind(name="generic", default_issuer=None, required=(), optional=None,
                    present=("sub",)),
}


# --- publishers from issuer.toml ----------------------------------------------------------


@dataclass(frozen=True)
class Publisher:
    """One ``[[trusted_publishers]]`` table, checked."""

    name: str
    kind: Kind
    issuer: str
    jwks_uri: str | None
    templates: tuple[str, ...]
    claims: dict[str, str]
    allow_reusable_workflows: bool = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.name, "issuer": self.issuer,
                "jwks_uri": self.jwks_uri, "templates": list(self.templates),
                "claims": dict(self.claims),
                "allow_reusable_workflows": self.allow_reusable_workflows}

    def mismatch(self, claims: Mapping[str, Any]) -> str | None:
        """Why a verified token from this publisher's issuer does not match it; None if it does."""
        for name in self.kind.present:
            if _text(claims.get(name)) is None:
                return f"the token has no '{name}' claim (a {self.kind.name} token carries one)"
        for name, pattern in self.claims.items():
            value = _text(claims.get(name))
            if value is None:
                return f"the token has no '{name}' claim"
            if not _glob(pattern, fold=name in self.kind.folded).match(value):
                return f"claim '{name}' is {value!r}, not {pattern!r}"
        return self.kind.rule(self, claims) if self.kind.rule else None


def _url(value: object, where: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or not parts.hostname or parts.query or parts.fragment or not (
            parts.scheme == "https" or (parts.scheme == "http"
                                        and is_loopback_host(parts.hostname))):
        raise ConfigError(f"{where}: {value!r} is not an https URL (http only on loopback)")
    assert isinstance(value, str)
    return value


def parse_publisher(table: Mapping[str, Any], where: str) -> Publisher:
    """One ``[[trusted_publishers]]`` table; ConfigError naming the key and the rule."""
    known = {"name", "kind", "issuer", "jwks_uri", "templates", "claims",
             "allow_reusable_workflows"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must match [a-z0-9][a-z0-9._-]{{0,63}}")
    where = f"{where} '{name}'"
    issuer = table.get("issuer")
    kind_name = table.get("kind") or next((k.name for k in KINDS.values()
                                           if k.default_issuer and k.default_issuer == issuer),
                                          "generic")
    if kind_name not in KINDS:
        raise ConfigError(f"{where}: kind {kind_name!r} is not one of {', '.join(KINDS)}")
    kind = KINDS[kind_name]
    issuer = _url(issuer if issuer is not None else kind.default_issuer, f"{where}: issuer")
    jwks_uri = table.get("jwks_uri")
    if jwks_uri is not None:
        jwks_uri = _url(jwks_uri, f"{where}: jwks_uri")
    templates = table.get("templates")
    if not isinstance(templates, list) or not templates or \
            not all(isinstance(t, str) for t in templates):
        raise ConfigError(f"{where}: 'templates' must be a non-empty list of template names")
    for template in templates:
        try:
            check_name(template)
        except IssuerError as exc:  # the template rule's own one-line message
            raise ConfigError(f"{where}: templates: {exc}") from None
    claims = _parse_claims(table.get("claims"), kind, where)
    reusable = table.get("allow_reusable_workflows", False)
    if not isinstance(reusable, bool):
        raise ConfigError(f"{where}: 'allow_reusable_workflows' must be true or false")
    return Publisher(name=name, kind=kind, issuer=issuer, jwks_uri=jwks_uri,
                     templates=tuple(sorted(set(templates))), claims=claims,
                     allow_reusable_workflows=reusable)


def _parse_claims(raw: object, kind: Kind, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: [trusted_publishers.claims] must pin at least one claim")
    claims: dict[str, str] = {}
    for name, value in raw.items():
        text = _text(value)
        if text is None or not text:
            raise ConfigError(f"{where}: claim '{name}' must be a non-empty string "
                              "(* matches any run of characters)")
        allowed = (*kind.required, *(kind.optional or ()))
        if kind.optional is not None and name not in allowed:
            raise ConfigError(f"{where}: claim '{name}' can't be pinned for {kind.name} "
                              f"(one of {', '.join(allowed)})")
        if name in ("iss", "aud", "exp", "iat", "nbf", "jti"):
            raise ConfigError(f"{where}: claim '{name}' is checked by the exchange itself")
        claims[name] = text
    missing = [c for c in kind.required if c not in claims]
    if missing:
        raise ConfigError(f"{where}: a {kind.name} publisher must pin {', '.join(missing)}"
                          + (" (the owner's immutable id: a renamed or re-registered owner "
                             "must not inherit the publisher)"
                             if any(m.endswith("_id") for m in missing) else ""))
    for name in kind.required:
        if claims[name].strip("*") == "":
            raise ConfigError(f"{where}: claim '{name}' can't be only '*'")
    return claims


def parse_publishers(tables: Sequence[Mapping[str, Any]], source: str) -> tuple[Publisher, ...]:
    """Every ``[[trusted_publishers]]`` table; names are unique."""
    publishers = tuple(parse_publisher(t, f"{source}: [[trusted_publishers]] #{i + 1}")
                       for i, t in enumerate(tables))
    names = [p.name for p in publishers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{source}: two trusted publishers are named '{duplicate}'")
    return publishers


# --- verifying CI tokens ------------------------------------------------------------------


@dataclass(frozen=True)
class CiToken:
    """A CI ID token whose signature, issuer, audience and times verified."""

    issuer: str
    claims: dict[str, Any]
    jti: str
    exp: int


@dataclass(frozen=True)
class Match:
    """The publisher a verified token matched, with what the statement and audit keep."""

    publisher: Publisher
    token: CiToken

    @property
    def provenance(self) -> dict[str, str]:
        """The statement's ``provenance`` claim: who built it, from what, where."""
        return {"publisher": self.publisher.name, "issuer": self.token.issuer,
                **self.publisher.kind.provenance(self.token.claims)}

    @property
    def repository(self) -> str | None:
        claim = self.publisher.kind.repository_claim
        return _text(self.token.claims.get(claim)) if claim else None


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a CI token, unverified: only to route and to explain a refusal."""
    try:
        return parse_compact(token).unverified_claims()
    except InvalidSoftwareStatement:
        return {}


def choose(publishers: Sequence[Publisher], claims: Mapping[str, Any]
           ) -> tuple[Publisher | None, list[tuple[str, str | None]]]:
    """Every publisher of the token's issuer, matched or why not, and the one chosen: one that
    pins ``environment`` wins over one that doesn't (a deployment-protected job is the
    narrower grant), then the first in issuer.toml."""
    results = [(p.name, p.mismatch(claims)) for p in publishers]
    matched = [p for p, (_, why) in zip(publishers, results) if why is None]
    matched.sort(key=lambda p: "environment" not in p.claims)
    return (matched[0] if matched else None), results


class CiTokenVerifier:
    """Verifies CI ID tokens for the configured publishers; thread-safe, keys cached."""

    def __init__(self, publishers: Sequence[Publisher], audience: str, clock: Clock, *,
                 get: HttpGet | None = None, leeway: int = LEEWAY,
                 min_refresh: float = MIN_REFRESH) -> None:
        self.publishers = tuple(publishers)
        self.audience = audience
        self.clock = clock
        self.leeway = leeway
        self.min_refresh = min_refresh
        self._get: HttpGet = get or (lambda url, headers: http_get(
            url, headers, limit=MAX_DISCOVERY_BYTES))
        self._jwks: dict[str, RemoteJwks] = {}
        self._lock = threading.Lock()

    def for_issuer(self, issuer: str) -> list[Publisher]:
        return [p for p in self.publishers if p.issuer == issuer]

    def verify(self, token: str) -> CiToken:
        """The verified token, or InvalidGrant saying why (UpstreamUnavailable when the CI's
        keys can't be fetched: the caller may retry)."""
        try:
            parsed = parse_compact(token)
            claims = parsed.unverified_claims()
        except InvalidSoftwareStatement as exc:
            raise InvalidGrant(_reason(exc, "subject_token")) from None
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not self.for_issuer(issuer):
            raise InvalidGrant(f"subject_token: issuer {issuer!r} is not the issuer of any "
                               "trusted publisher")
        kid = parsed.header.get("kid")
        try:
            jwks = self._keys(issuer).get(kid if isinstance(kid, str) else None)
        except InvalidSoftwareStatement as exc:
            raise UpstreamUnavailable(_reason(exc, f"CI issuer {issuer}")) from None
        try:
            payload = verify_signature(parsed, jwks, algorithms=CI_ALGORITHMS)
        except InvalidSoftwareStatement as exc:
            raise InvalidGrant(_reason(exc, "subject_token")) from None
        verified = json.loads(payload)
        self._check_claims(verified, issuer)
        return CiToken(issuer=issuer, claims=verified, jti=verified["jti"], exp=verified["exp"])

    def _check_claims(self, claims: Mapping[str, Any], issuer: str) -> None:
        """RFC 7519 section 4.1 for an ID token presented as a credential (RFC 8725 s3.9)."""
        if claims.get("iss") != issuer:  # the payload that verified, not the one routed on
            raise InvalidGrant("subject_token: iss changed between routing and verification")
        aud = claims.get("aud")
        if isinstance(aud, list):
            raise InvalidGrant(f"subject_token: aud is a list {aud!r}; a single audience "
                               f"{self.audience!r} is required")
        if aud != self.audience:
            raise InvalidGrant(f"subject_token: aud {aud!r} is not {self.audience!r}")
        now = self.clock.now()
        for name in ("exp", "iat"):
            value = claims.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidGrant(f"subject_token: '{name}' is missing or not a number")
        if now >= claims["exp"] + self.leeway:
            raise InvalidGrant("subject_token: expired")
        if claims["iat"] > now + self.leeway:
            raise InvalidGrant("subject_token: issued in the future (iat)")
        nbf = claims.get("nbf")
        if nbf is not None and (isinstance(nbf, bool) or not isinstance(nbf, int)
                                or nbf > now + self.leeway):
            raise InvalidGrant("subject_token: not valid yet (nbf)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
            raise InvalidGrant("subject_token: no usable 'jti' (a CI token is accepted once)")

    def _keys(self, issuer: str) -> RemoteJwks:
        with self._lock:
            remote = self._jwks.get(issuer)
            if remote is None:
                configured = next((p.jwks_uri for p in self.for_issuer(issuer) if p.jwks_uri),
                                  None)
                uri = configured or self._discover(issuer)
                remote = RemoteJwks(uri, clock=self.clock, get=self._nonempty,
                                    min_refresh_interval=self.min_refresh, max_stale=3600,
                                    failure_ttl=0)  # an empty set: the next token asks again
                self._jwks[issuer] = remote
            return remote

    def _discover(self, issuer: str) -> str:
        """``jwks_uri`` from the issuer's ``/.well-known/openid-configuration`` (OpenID Connect
        Discovery 1.0 section 4); its ``issuer`` must be exactly the one asked (section 4.3)."""
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            doc = json.loads(self._get(url, {"Accept": "application/json"}).body)
        except (FetchError, ValueError, UnicodeDecodeError) as exc:
            raise UpstreamUnavailable(f"CI issuer discovery failed: {exc}") from None
        if not isinstance(doc, dict) or doc.get("issuer") != issuer:
            raise InvalidGrant(f"the discovery document at {url} names another issuer")
        try:
            return _url(doc.get("jwks_uri"), f"{url}: jwks_uri")
        except ConfigError as exc:
            raise UpstreamUnavailable(exc.description) from None

    def _nonempty(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        """A key set with no keys is a fetch failure: it is never cached in place of a good
        one, and the next token asks again."""
        response = self._get(url, headers)
        if response.status != 304:
            try:
                keys = json.loads(response.body).get("keys")
            except (ValueError, UnicodeDecodeError, AttributeError):
                keys = None
            if not isinstance(keys, list) or not keys:
                raise FetchError(f"{url} holds no keys")
        return response


def _reason(exc: InvalidSoftwareStatement, what: str) -> str:
    text = exc.description.removeprefix("software statement rejected: ")
    text = text.replace("the issuer's JWKS", "the CI issuer's JWKS")
    return f"{what}: {text}"
