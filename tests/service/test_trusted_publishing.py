"""Trusted publishing in-process: the RFC 8693 exchange of CI ID tokens from a real loopback
OIDC issuer, the attacks it must refuse, provenance in the statements, Idempotency-Key."""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.publishers import GRANT_TYPE, ID_TOKEN_TYPE
from issuer.service.app import create_app
from tests.conftest import START, Cli, assert_one_line_error
from tests.oidc import OidcIssuer, github_claims, gitlab_claims, new_key, oidc_issuer, publishers_toml


@pytest.fixture
def ci() -> Iterator[OidcIssuer]:
    with oidc_issuer() as issuer:
        yield issuer


@pytest.fixture
def gitlab() -> Iterator[OidcIssuer]:
    with oidc_issuer() as issuer:
        yield issuer


class Pipeline:
    """The service in-process, with publishers for the loopback GitHub and GitLab issuers."""

    def __init__(self, home: Path, clock: FixedClock, github: OidcIssuer, gitlab: OidcIssuer,
                 extra: str = "") -> None:
        config = home / "issuer.toml"
        config.write_text(config.read_text() + publishers_toml(github.url, gitlab.url,
                                                               extra=extra))
        self.home, self.clock, self.github, self.gitlab = home, clock, github, gitlab
        self.auth = Authority.from_config(config, env={}, clock=clock)
        self.client = TestClient(create_app(self.auth), raise_server_exceptions=False)

    def github_token(self, **overrides: Any) -> str:
        return self.github.sign(github_claims(self.github.url, self.clock.now(), **overrides))

    def gitlab_token(self, **overrides: Any) -> str:
        return self.gitlab.sign(gitlab_claims(self.gitlab.url, self.clock.now(), **overrides))

    def exchange(self, subject: str, **form: str) -> Any:
        body = {"grant_type": GRANT_TYPE, "subject_token": subject,
                "subject_token_type": ID_TOKEN_TYPE, **form}
        return self.client.post("/v1/oidc/token", data=body)

    def minter(self, subject: str | None = None) -> str:
        answer = self.exchange(subject or self.github_token())
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def mint(self, bearer: str, template: str = "mcp-connector", version: str = "1.4.2",
             key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {bearer}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post("/v1/statements", headers=headers, json={
            "template": template, "claims": {"software_version": version}})

    def events(self, kind: str) -> list[Any]:
        return self.auth.audit.events(type_prefix=kind)


@pytest.fixture
def pipe(home: Path, clock: FixedClock, ci: OidcIssuer, gitlab: OidcIssuer) -> Iterator[Pipeline]:
    pipeline = Pipeline(home, clock, ci, gitlab)
    yield pipeline
    pipeline.auth.close()


def refused(response: Any, code: str = "invalid_grant", status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert response.headers["cache-control"] == "no-store"
    return str(body["error_description"])


# --- the accepted case, end to end ---------------------------------------------------------


def test_exchange_mint_verify_provenance_and_audit(pipe: Pipeline, cli: Cli, home: Path) -> None:
    subject = pipe.github_token()
    answer = pipe.exchange(subject)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["scope"] == "mcp-connector"
    assert answer.headers["cache-control"] == "no-store"
    minted = pipe.mint(body["access_token"])
    assert minted.status_code == 201, minted.text
    statement = minted.json()["software_statement"]
    verified = pipe.auth.verify(statement)
    assert verified.claims["provenance"] == {
        "publisher": "calendar-release", "issuer": pipe.github.url,
        "source_repository_uri": "https://github.com/acme/calendar-connector",
        "source_repository_ref": "refs/tags/v1.4.2", "source_repository_digest": "a" * 40,
        "build_signer_uri": "https://github.com/acme/calendar-connector/.github/workflows/"
                            "release.yml@refs/tags/v1.4.2",
        "run_invocation_uri": "https://github.com/acme/calendar-connector/actions/runs/987654"
                              "/attempts/1"}
    record = pipe.auth.audit.statement(minted.json()["jti"])
    assert record.publisher == "calendar-release"
    assert record.repository == "acme/calendar-connector"
    assert record.ci_claims is not None and record.ci_claims["repository_owner_id"] == "1001"
    assert record.principal.startswith("calendar-release@")
    [event] = pipe.events("oidc.exchanged")
    assert event.subject == "calendar-release"
    assert event.data["ci_claims"]["sub"] == "repo:acme/calendar-connector:environment:release"
    # The audit keeps the CI token's claims, never the token, and never the minter secret.
    dump = "\n".join(sqlite3.connect(home / "issuer.db").iterdump())
    assert subject not in dump and body["access_token"].split(".")[1] not in dump
    # The audit list filters by publisher and repository; a plain token's mint is not listed.
    _, admin = pipe.auth.tokens.create("ops", role="admin", templates=[], rate_limit=None,
                                       actor="t", channel="cli", now=pipe.auth.now())
    assert pipe.mint(admin).status_code == 201
    listed = json.loads(cli("audit", "list", "--publisher", "calendar-release", "--json").stdout)
    assert [r["jti"] for r in listed] == [record.jti]
    by_repo = json.loads(cli("audit", "list", "--repository", "acme/calendar-connector",
                             "--json").stdout)
    assert [r["jti"] for r in by_repo] == [record.jti]
    assert json.loads(cli("audit", "list", "--repository", "acme/other", "--json").stdout) == []
    page = pipe.client.get("/v1/statements", params={"publisher": "calendar-release"},
                           headers={"Authorization": f"Bearer {admin}"}).json()
    assert [r["jti"] for r in page["statements"]] == [record.jti]
    # The log still verifies with the new columns and events.
    assert cli("audit", "verify").exit_code == 0


def test_gitlab_token_is_accepted_for_its_publisher(pipe: Pipeline) -> None:
    bearer = pipe.minter(pipe.gitlab_token())
    minted = pipe.mint(bearer, template="desktop-agent")
    assert minted.status_code == 201, minted.text
    provenance = pipe.auth.verify(minted.json()["software_statement"]).claims["provenance"]
    assert provenance["publisher"] == "desktop-release"
    assert provenance["source_repository_uri"] == f"{pipe.gitlab.url}/acme/desktop-agent"
    assert provenance["source_repository_ref"] == "refs/tags/v2.0.0"
    assert provenance["build_signer_uri"].endswith("//.gitlab-ci.yml@refs/tags/v2.0.0")
    assert provenance["run_invocation_uri"] == f"{pipe.gitlab.url}/acme/desktop-agent/-/jobs/5678"


# --- the attacks ----------------------------------------------------------------------------

WORKFLOW = "acme/calendar-connector/.github/workflows/release.yml@refs/tags/v1.4.2"

GITHUB_ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong aud", {"aud": "https://other.example.com"}, "aud"),
    ("list aud", {"aud": ["https://issuer.example.com"]}, "a single audience"),
    ("no aud", {"aud": None}, "aud"),
    ("expired", {"exp": START - 31}, "expired"),
    ("future nbf", {"nbf": START + 120}, "nbf"),
    ("future iat", {"iat": START + 120}, "iat"),
    ("no jti", {"jti": None}, "jti"),
    ("same repository name, another owner", {"repository_owner_id": "6666"},
     "repository_owner_id"),
    ("renamed repository", {"repository": "acme/other"}, "repository"),
    ("reusable workflow", {"job_workflow_ref": "evil/shared/.github/workflows/release.yml@"
                                               "refs/tags/v1"}, "job_workflow_ref"),
    ("reusable workflow of the same name", {
        "workflow_ref": "acme/calendar-connector/.github/workflows/ci.yml@refs/tags/v1.4.2"},
     "reusable workflow"),
    ("environment mismatch", {"environment": "staging"}, "environment"),
    ("no environment", {"environment": None}, "environment"),
    ("branch instead of tag", {"ref": "refs/heads/main"}, "ref"),
    ("another workflow file", {
        "job_workflow_ref": "acme/calendar-connector/.github/workflows/other.yml@refs/tags/v1",
        "workflow_ref": "acme/calendar-connector/.github/workflows/other.yml@refs/tags/v1"},
     "job_workflow_ref"),
    ("owner id as a number", {"repository_owner_id": 6666}, "repository_owner_id"),
]


@pytest.mark.parametrize("overrides,fragment", [a[1:] for a in GITHUB_ATTACKS],
                         ids=[a[0] for a in GITHUB_ATTACKS])
def test_refused_github_tokens(pipe: Pipeline, overrides: dict[str, Any], fragment: str) -> None:
    claims = github_claims(pipe.github.url, pipe.clock.now(), **overrides)
    why = refused(pipe.exchange(pipe.github.sign(claims)))
    assert fragment in why, why
    [event] = pipe.events("oidc.refused")
    assert event.data["error"] == "invalid_grant" and event.data["error_description"] == why
    assert event.data["ci_claims"]["iss"] == pipe.github.url  # the CI claims are kept
    assert pipe.events("oidc.exchanged") == []
    assert pipe.auth.tokens.list() == []


def test_refused_gitlab_config_from_another_project(pipe: Pipeline) -> None:
    why = refused(pipe.exchange(pipe.gitlab_token(
        ci_config_ref_uri="gitlab.example.com/evil/ci//templates/release.yml@refs/heads/main")))
    assert "ci_config_ref_uri" in why
    why = refused(pipe.exchange(pipe.gitlab_token(namespace_id="99")))
    assert "namespace_id" in why


def test_unknown_issuer_and_a_second_issuer_copying_claims(pipe: Pipeline) -> None:
    with oidc_issuer() as other:
        # Its own iss: no publisher trusts it.
        why = refused(pipe.exchange(other.sign(github_claims(other.url, pipe.clock.now()))))
        assert "not the issuer of any trusted publisher" in why
        # The first issuer's iss and claims, signed by the second: the keys say no.
        copied = other.sign(github_claims(pipe.github.url, pipe.clock.now()))
        why = refused(pipe.exchange(copied))
        assert "kid" in why or "signature" in why
        # Even naming the real issuer's kid.
        forged = other.sign(github_claims(pipe.github.url, pipe.clock.now()),
                            header={"kid": pipe.github.keys[0].kid})
        assert "signature" in refused(pipe.exchange(forged))
    assert pipe.auth.tokens.list() == []


@pytest.mark.parametrize("alg", ["HS256", "none", "RS512", "PS256"])
def test_algorithms_other_than_rs256_and_es256_are_refused(pipe: Pipeline, alg: str) -> None:
    from issuer.core.encoding import b64url

    claims = github_claims(pipe.github.url, pipe.clock.now())
    header = {"alg": alg, "kid": pipe.github.keys[0].kid, "typ": "JWT"}
    token = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                      b64url(b"\0" * 32)])
    assert "alg" in refused(pipe.exchange(token))


def test_es256_tokens_verify(pipe: Pipeline) -> None:
    pipe.github.keys.append(new_key("ES256"))
    token = pipe.github.sign(github_claims(pipe.github.url, pipe.clock.now()),
                             key=pipe.github.keys[1])
    assert pipe.exchange(token).status_code == 200


def test_a_replayed_ci_token_is_refused(pipe: Pipeline) -> None:
    subject = pipe.github_token()
    assert pipe.exchange(subject).status_code == 200
    assert "already exchanged" in refused(pipe.exchange(subject))
    assert len(pipe.auth.tokens.list()) == 1
    assert len(pipe.events("oidc.exchanged")) == 1 and len(pipe.events("oidc.refused")) == 1


def test_a_template_outside_the_publishers_set(pipe: Pipeline) -> None:
    bearer = pipe.minter()
    refused(pipe.mint(bearer, template="desktop-agent"), "insufficient_scope", 403)
    assert "desktop-agent" in refused(pipe.exchange(pipe.github_token(), scope="desktop-agent"),
                                      "invalid_scope")
    listed = pipe.client.get("/v1/templates", headers={"Authorization": f"Bearer {bearer}"})
    assert [t["name"] for t in listed.json()["templates"]] == ["mcp-connector"]


def test_the_minter_token_expires(pipe: Pipeline) -> None:
    bearer = pipe.minter()
    pipe.clock.advance(899)
    assert pipe.mint(bearer).status_code == 201
    pipe.clock.advance(1)
    assert "expired" in refused(pipe.mint(bearer), "invalid_token", 401)


def test_ci_key_rotation_costs_one_refetch(pipe: Pipeline) -> None:
    assert pipe.exchange(pipe.github_token()).status_code == 200
    assert (pipe.github.discovery_fetches, pipe.github.jwks_fetches) == (1, 1)
    assert pipe.exchange(pipe.github_token()).status_code == 200
    assert pipe.github.jwks_fetches == 1  # cached
    pipe.clock.advance(61)
    pipe.github.rotate()
    assert pipe.exchange(pipe.github_token()).status_code == 200
    assert pipe.github.jwks_fetches == 2 and pipe.github.discovery_fetches == 1


def test_a_burst_of_forged_kids_fetches_at_most_once_a_minute(pipe: Pipeline) -> None:
    assert pipe.exchange(pipe.github_token()).status_code == 200
    pipe.clock.advance(61)
    attacker = new_key()
    for n in range(40):
        refused(pipe.exchange(pipe.github.sign(github_claims(pipe.github.url, pipe.clock.now()),
                                               key=attacker, header={"kid": f"forged-{n}"})))
    assert pipe.github.jwks_fetches == 2  # one refetch for the first unknown kid, then none
    pipe.clock.advance(61)
    refused(pipe.exchange(pipe.github.sign(github_claims(pipe.github.url, pipe.clock.now()),
                                           key=attacker, header={"kid": "forged-late"})))
    assert pipe.github.jwks_fetches == 3


def test_an_empty_key_set_is_never_cached(pipe: Pipeline) -> None:
    pipe.github.serve_empty_jwks = True
    assert "no keys" in refused(pipe.exchange(pipe.github_token()), "temporarily_unavailable",
                                503)
    pipe.github.serve_empty_jwks = False
    assert pipe.exchange(pipe.github_token()).status_code == 200  # at once, no minute's wait


def test_a_publisher_pinning_environment_is_preferred(home: Path, clock: FixedClock,
                                                      ci: OidcIssuer, gitlab: OidcIssuer) -> None:
    loose = f'''
[[trusted_publishers]]
name = "calendar-any"
kind = "github"
issuer = "{ci.url}"
templates = ["mcp-connector", "desktop-agent"]
[trusted_publishers.claims]
repository = "acme/calendar-connector"
repository_owner_id = "1001"
job_workflow_ref = "acme/calendar-connector/.github/workflows/*"
'''
    pipe = Pipeline(home, clock, ci, gitlab, extra=loose)
    try:
        answer = pipe.exchange(pipe.github_token())
        assert answer.json()["scope"] == "mcp-connector"  # calendar-release, environment-pinned
        answer = pipe.exchange(pipe.github_token(environment="staging"))
        assert answer.json()["scope"] == "desktop-agent mcp-connector"  # only calendar-any
    finally:
        pipe.auth.close()


# --- the request itself ---------------------------------------------------------------------


def test_malformed_exchange_requests(pipe: Pipeline) -> None:
    assert refused(pipe.exchange(pipe.github_token(), grant_type="client_credentials"),
                   "unsupported_grant_type")
    refused(pipe.exchange(pipe.github_token(), subject_token_type="urn:x"), "invalid_request")
    refused(pipe.exchange(""), "invalid_request")
    refused(pipe.exchange(pipe.github_token(), audience="https://elsewhere.example"),
            "invalid_target")
    refused(pipe.exchange("not.a.jwt"), "invalid_grant")
    as_json = pipe.client.post("/v1/oidc/token", json={"grant_type": GRANT_TYPE})
    refused(as_json, "invalid_request")
    twice = pipe.client.post("/v1/oidc/token", content=b"grant_type=a&grant_type=b",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "more than once" in refused(twice, "invalid_request")
    assert pipe.auth.tokens.list() == []


# --- Idempotency-Key --------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_statement(pipe: Pipeline) -> None:
    first = pipe.mint(pipe.minter(), key="run-987654-release")
    assert first.status_code == 201
    # A retried job exchanges again (a new minter token) and sends the same key.
    again = pipe.mint(pipe.minter(), key="run-987654-release")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert pipe.auth.audit.count_statements() == 1
    # The same key for another request is a conflict, not a second statement.
    assert "different request" in refused(pipe.mint(pipe.minter(), version="9.9.9",
                                                    key="run-987654-release"), "conflict", 409)
    refused(pipe.mint(pipe.minter(), key="bad key"), "invalid_request")
    # After the documented window the key is forgotten.
    pipe.clock.advance(24 * 3600 + 1)
    later = pipe.mint(pipe.minter(), key="run-987654-release")
    assert later.status_code == 201 and later.json()["jti"] != first.json()["jti"]
    assert pipe.auth.audit.count_statements() == 2


def test_idempotency_keys_are_per_caller(pipe: Pipeline) -> None:
    _, other = pipe.auth.tokens.create("other", role="minter", templates=["mcp-connector"],
                                       rate_limit=None, actor="t", channel="cli",
                                       now=pipe.auth.now())
    first = pipe.mint(pipe.minter(), key="k1")
    second = pipe.mint(other, key="k1")
    assert first.json()["jti"] != second.json()["jti"]


# --- issuer publishers ------------------------------------------------------------------------


def test_publishers_list_and_check(pipe: Pipeline, cli: Cli) -> None:
    listed = json.loads(cli("publishers", "list", "--json").stdout)
    assert [p["name"] for p in listed] == ["calendar-release", "desktop-release"]
    assert listed[0]["kind"] == "github" and listed[1]["kind"] == "gitlab"
    table = cli("publishers", "list").stdout
    assert "calendar-release" in table and "repository_owner_id=1001" in table
    # The CLI reads the real time; the service under test a fixed one.
    pipe.clock.t = time.time()
    token = pipe.github_token()
    good = cli("publishers", "check", token)
    assert good.exit_code == 0, good.stderr
    assert "calendar-release: matches" in good.stdout and "would use: calendar-release" in good.stdout
    assert pipe.exchange(token).status_code == 200  # checking did not use the token up
    bad = cli("publishers", "check", pipe.github_token(repository_owner_id="6666"), "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["verified"] is True and report["publisher"] is None
    assert "repository_owner_id" in report["publishers"][0]["reason"]
    expired = cli("publishers", "check", pipe.github_token(exp=int(time.time()) - 100))
    assert expired.exit_code == 1 and "NOT verified" in expired.stdout


BAD_PUBLISHERS = [
    ('name = "x"\nkind = "github"\nissuer = "{u}"\ntemplates = ["mcp-connector"]\n'
     '[trusted_publishers.claims]\nrepository = "acme/c"\n'
     'job_workflow_ref = "acme/c/.github/workflows/r.yml@*"', "repository_owner_id"),
    ('name = "x"\nkind = "github"\nissuer = "{u}"\ntemplates = ["mcp-connector"]\n'
     '[trusted_publishers.claims]\nrepository = "*"\nrepository_owner_id = "1"\n'
     'job_workflow_ref = "a"', "only '*'"),
    ('name = "x"\nkind = "github"\nissuer = "{u}"\ntemplates = ["mcp-connector"]\n'
     '[trusted_publishers.claims]\nrepository = "a/b"\nrepository_owner_id = "1"\n'
     'job_workflow_ref = "a"\nfavourite_colour = "red"', "can't be pinned"),
    ('name = "x"\nkind = "circle"\nissuer = "{u}"\ntemplates = ["t"]\n'
     '[trusted_publishers.claims]\nsub = "a"', "kind"),
    ('name = "x"\nissuer = "http://ci.example.com"\ntemplates = ["t"]\n'
     '[trusted_publishers.claims]\nsub = "a"', "https"),
    ('name = "x"\nissuer = "{u}"\ntemplates = []\n[trusted_publishers.claims]\nsub = "a"',
     "templates"),
    ('name = "x"\nissuer = "{u}"\ntemplates = ["t"]', "at least one claim"),
    ('name = "x"\nissuer = "{u}"\ntemplates = ["t"]\n[trusted_publishers.claims]\naud = "a"',
     "checked by the exchange"),
]


@pytest.mark.parametrize("table,fragment", BAD_PUBLISHERS)
def test_bad_publisher_tables_are_config_errors(cli: Cli, home: Path, table: str,
                                                fragment: str) -> None:
    config = home / "issuer.toml"
    config.write_text(config.read_text() + "\n[[trusted_publishers]]\n"
                      + table.replace("{u}", "https://ci.example.com") + "\n")
    assert_one_line_error(cli("publishers", "list"), 2, fragment)


def test_trusted_publishing_settings(cli: Cli, home: Path) -> None:
    config = home / "issuer.toml"
    base = config.read_text()
    config.write_text(base + '\n[trusted_publishing]\ntoken_lifetime = "2h"\n')
    assert_one_line_error(cli("publishers", "list"), 2, "token_lifetime", "longer than 1h")
    config.write_text(base + '\n[trusted_publishing]\naudience = "https://aud.example"\n'
                      'token_lifetime = "5m"\n')
    auth = Authority.from_config(config, env={})
    assert (auth.config.exchange_audience, auth.config.exchange_lifetime) == (
        "https://aud.example", 300)
    auth.close()


def test_exchanges_are_rate_limited_per_client(home: Path, clock: FixedClock, ci: OidcIssuer,
                                               gitlab: OidcIssuer) -> None:
    config = home / "issuer.toml"
    config.write_text(config.read_text().replace('rate_limit = "600/minute"',
                                                 'rate_limit = "3/minute"'))
    pipe = Pipeline(home, clock, ci, gitlab)
    try:
        for _ in range(3):
            refused(pipe.exchange("not.a.jwt"))
        limited = pipe.exchange(pipe.github_token())
        assert limited.status_code == 429 and limited.headers["retry-after"]
        assert len(pipe.events("oidc.refused")) == 3  # the refused flood stops being recorded
    finally:
        pipe.auth.close()


def test_generic_publisher_with_a_configured_jwks_uri(home: Path, clock: FixedClock,
                                                      ci: OidcIssuer, gitlab: OidcIssuer) -> None:
    with oidc_issuer() as other:
        generic = f'''
[[trusted_publishers]]
name = "buildbox"
issuer = "{other.url}"
jwks_uri = "{other.url}/jwks"
templates = ["workflow-runner"]
[trusted_publishers.claims]
sub = "pipeline:acme/*:ref:refs/tags/*"
'''
        pipe = Pipeline(home, clock, ci, gitlab, extra=generic)
        try:
            assert pipe.auth.publishers[-1].kind.name == "generic"
            good = {"iss": other.url, "aud": "https://issuer.example.com", "iat": START,
                    "exp": START + 300, "jti": "j-1", "sub": "pipeline:acme/runner:ref:refs/tags/v3"}
            bearer = pipe.minter(other.sign(good))
            assert other.discovery_fetches == 0 and other.jwks_fetches == 1
            minted = pipe.mint(bearer, template="workflow-runner")
            assert minted.status_code == 201, minted.text
            provenance = pipe.auth.verify(minted.json()["software_statement"]).claims["provenance"]
            assert provenance == {"publisher": "buildbox", "issuer": other.url}
            bad = {**good, "jti": "j-2", "sub": "pipeline:evil/runner:ref:refs/tags/v3"}
            assert "claim 'sub'" in refused(pipe.exchange(other.sign(bad)))
        finally:
            pipe.auth.close()
