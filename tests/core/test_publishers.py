"""Publisher claim tables and matching, without a network: the kind rules and the glob."""

from __future__ import annotations

from issuer.core.publishers import choose, parse_publisher
from tests.oidc import github_claims, gitlab_claims

GITLAB = {"name": "desk", "kind": "gitlab", "issuer": "https://gitlab.example.com",
          "templates": ["desktop-agent"],
          "claims": {"project_path": "acme/desktop-agent", "namespace_id": "55",
                     "ci_config_ref_uri": "gitlab.example.com/*//.gitlab-ci.yml@refs/tags/*"}}
GITHUB = {"name": "cal", "issuer": "https://token.actions.githubusercontent.com",
          "templates": ["mcp-connector"],
          "claims": {"repository": "acme/calendar-connector", "repository_owner_id": "1001",
                     "job_workflow_ref": "*/.github/workflows/release.yml@refs/tags/*"}}


def test_gitlab_configuration_must_live_in_the_project_itself() -> None:
    publisher = parse_publisher(GITLAB, "test")
    claims = gitlab_claims("https://gitlab.example.com", 0)
    assert publisher.mismatch(claims) is None
    for uri in ("gitlab.example.com/evil/acme/desktop-agent//.gitlab-ci.yml@refs/tags/v2",
                "gitlab.example.com/evil/ci//.gitlab-ci.yml@refs/tags/v2"):
        why = publisher.mismatch({**claims, "ci_config_ref_uri": uri})
        assert why is not None and "not in project" in why
    allowed = parse_publisher({**GITLAB, "allow_reusable_workflows": True}, "test")
    assert allowed.mismatch({**claims, "ci_config_ref_uri": "gitlab.example.com/evil/ci//"
                                                            ".gitlab-ci.yml@refs/tags/v2"}) is None


def test_github_reusable_workflows_only_when_allowed() -> None:
    publisher = parse_publisher(GITHUB, "test")
    assert publisher.kind.name == "github"  # from the issuer
    claims = github_claims("https://token.actions.githubusercontent.com", 0)
    assert publisher.mismatch(claims) is None
    # A caller workflow in the repository running a reusable one from another owner: its
    # job_workflow_ref still matches the loose pattern, and the rule refuses it.
    reusable = {**claims, "job_workflow_ref": "evil/shared/.github/workflows/release.yml@refs/tags/x"}
    why = publisher.mismatch(reusable)
    assert why is not None and "reusable workflow" in why
    assert parse_publisher({**GITHUB, "allow_reusable_workflows": True},
                           "test").mismatch(reusable) is None


def test_glob_is_star_only_and_case_rules_per_claim() -> None:
    publisher = parse_publisher({**GITHUB, "claims": {**GITHUB["claims"],  # type: ignore[dict-item]
                                                      "ref": "refs/tags/v[1]?"}}, "test")
    claims = github_claims("https://token.actions.githubusercontent.com", 0)
    assert publisher.mismatch({**claims, "ref": "refs/tags/v[1]?"}) is None
    assert publisher.mismatch({**claims, "ref": "refs/tags/v1x"}) is not None
    # GitHub treats repository names without regard to case; refs are exact.
    assert publisher.mismatch({**claims, "repository": "ACME/Calendar-Connector",
                               "ref": "refs/tags/v[1]?"}) is None
    assert publisher.mismatch({**claims, "ref": "REFS/TAGS/V[1]?"}) is not None


def test_choose_prefers_environment_then_order() -> None:
    first = parse_publisher(GITHUB, "test")
    pinned = parse_publisher({**GITHUB, "name": "cal-env",
                              "claims": {**GITHUB["claims"],  # type: ignore[dict-item]
                                         "environment": "release"}}, "test")
    claims = github_claims("https://token.actions.githubusercontent.com", 0)
    chosen, results = choose([first, pinned], claims)
    assert chosen is pinned and results == [("cal", None), ("cal-env", None)]
    chosen, _ = choose([first, pinned], {**claims, "environment": "dev"})
    assert chosen is first
