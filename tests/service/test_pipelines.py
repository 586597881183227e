"""Release pipelines against a served issuer (a real `issuer serve` process) and a loopback CI
OIDC issuer: the GitHub Action's steps run with the environment GitHub provides, the GitLab
template's script with GitLab's, and `issuer mint --remote` with a token file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import installed_issuer
from tests.oidc import OidcIssuer, gitlab_claims, oidc_issuer, publishers_toml
from tests.service.test_served import Served, free_port, new_home, start

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(installed_issuer()).parent)


# One CI issuer pair and one served issuer for the whole module: each test uses its own run
# ids, token names and templates, and starting `issuer serve` is the slow part.
@pytest.fixture(scope="module")
def ci() -> Iterator[tuple[OidcIssuer, OidcIssuer]]:
    with oidc_issuer() as github, oidc_issuer() as gitlab:
        yield github, gitlab


@pytest.fixture(scope="module")
def served_pipeline(tmp_path_factory: pytest.TempPathFactory,
                    ci: tuple[OidcIssuer, OidcIssuer]) -> Iterator[Served]:
    github, gitlab = ci
    home, env = new_home(tmp_path_factory.mktemp("served"), "https://issuer.example.com",
                         rate_limit='"unlimited"')
    config = home / "issuer.toml"
    config.write_text(config.read_text() + publishers_toml(github.url, gitlab.url))
    port = free_port()
    process = start(home, env, port)
    yield Served(home, f"http://127.0.0.1:{port}", process, env)
    process.kill()
    process.wait(timeout=10)


def github_env(served: Served, github: OidcIssuer, workdir: Path, run_id: str) -> dict[str, str]:
    """What a GitHub-hosted runner sets for a job with `permissions: id-token: write`."""
    output = workdir / "github_output"
    output.touch()
    return {**served.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "mint",
            "GITHUB_REPOSITORY": "acme/calendar-connector", "GITHUB_REF": "refs/tags/v1.4.2",
            "GITHUB_OUTPUT": str(output), "GITHUB_ACTION_PATH": str(ROOT),
            "RUNNER_TEMP": str(workdir),
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{github.url}/actions-token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token}


def run_action(inputs: dict[str, str], env: dict[str, str], cwd: Path
               ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The composite action's steps, as the runner runs them: `${{ inputs.* }}` substituted,
    each step's env, bash, in the workspace; then the outputs it wrote."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    given = {name: inputs.get(name, spec.get("default", "")) for name, spec in
             action["inputs"].items()}
    missing = [n for n, spec in action["inputs"].items() if spec.get("required") and not given[n]]
    assert not missing, missing

    def expand(text: str) -> str:
        for name, value in given.items():
            text = text.replace("${{ inputs.%s }}" % name, value)
        return text

    result = subprocess.CompletedProcess[str]([], 0, "", "")
    for step in action["runs"]["steps"]:
        if step.get("if") == "inputs.install != 'false'" and given["install"] == "false":
            continue
        assert step["shell"] == "bash"
        step_env = {**env, **{k: expand(str(v)) for k, v in step.get("env", {}).items()}}
        result = subprocess.run(["bash", "-e", "-c", expand(step["run"])], env=step_env,
                                cwd=cwd, text=True, capture_output=True, timeout=120)
        if result.returncode != 0:
            break
    lines = Path(env["GITHUB_OUTPUT"]).read_text().splitlines()
    outputs = dict(line.split("=", 1) for line in lines if "=" in line)
    declared = {name: spec["value"] for name, spec in action["outputs"].items()}
    assert all(value == "${{ steps.mint.outputs.%s }}" % name
               for name, value in declared.items()), declared
    return result, outputs


def verify(served: Served, statement: str) -> dict[str, Any]:
    checked = subprocess.run([installed_issuer(), "verify", "-", "--jwks",
                              f"{served.url}/.well-known/jwks.json", "--issuer",
                              "https://issuer.example.com", "--no-status-check", "--json"],
                             input=statement,
                             env=served.env, text=True, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    return dict(json.loads(checked.stdout)["claims"])


def test_the_github_action_mints_on_tag_push(served_pipeline: Served,
                                             ci: tuple[OidcIssuer, OidcIssuer],
                                             tmp_path: Path) -> None:
    github, _ = ci
    env = github_env(served_pipeline, github, tmp_path, run_id="987654")
    inputs = {"issuer-url": served_pipeline.url, "template": "mcp-connector",
              "set": "software_version=1.4.2\n", "install": "false"}
    result, outputs = run_action(inputs, env, tmp_path)
    assert result.returncode == 0, result.stderr
    statement = (tmp_path / "software-statement.jwt").read_text().strip()
    assert outputs["statement"] == statement and outputs["path"] == "software-statement.jwt"
    claims = verify(served_pipeline, statement)
    assert claims["software_version"] == "1.4.2" and claims["jti"] == outputs["jti"]
    assert claims["provenance"]["publisher"] == "calendar-release"
    assert claims["provenance"]["source_repository_ref"] == "refs/tags/v1.4.2"
    # A re-run of the same job (a new ID token, a new exchange) gets the same statement back.
    (tmp_path / "github_output").write_text("")
    again, outputs_again = run_action(inputs, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert outputs_again["jti"] == outputs["jti"]
    # Another run mints another.
    other = tmp_path / "other"
    other.mkdir()
    _, third = run_action(inputs, github_env(served_pipeline, github, other, run_id="987655"),
                          other)
    assert third["jti"] != outputs["jti"]
    listed = served_pipeline.issuer("audit", "list", "--publisher", "calendar-release", "--json")
    assert sorted(r["jti"] for r in json.loads(listed.stdout)) == sorted(
        [outputs["jti"], third["jti"]])


def test_the_github_action_fails_cleanly(served_pipeline: Served,
                                         ci: tuple[OidcIssuer, OidcIssuer],
                                         tmp_path: Path) -> None:
    github, _ = ci
    env = github_env(served_pipeline, github, tmp_path, run_id="1")
    # A workflow from a branch push: the publisher only trusts tags.
    github.actions_claims = {"ref": "refs/heads/main"}
    try:
        result, outputs = run_action({"issuer-url": served_pipeline.url,
                                      "template": "mcp-connector",
                                      "set": "software_version=1.4.2", "install": "false"},
                                     env, tmp_path)
    finally:
        github.actions_claims = {}
    assert result.returncode == 1 and outputs == {}
    assert "issuer: error:" in result.stderr and "claim 'ref'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "software-statement.jwt").exists()
    # No id-token permission: the runner sets no request URL.
    bare = {k: v for k, v in env.items() if not k.startswith("ACTIONS_ID_TOKEN")}
    result, _ = run_action({"issuer-url": served_pipeline.url, "template": "mcp-connector",
                            "set": "software_version=1.4.2", "install": "false"}, bare, tmp_path)
    assert result.returncode == 2 and "id-token: write" in result.stderr


def test_the_gitlab_template_mints(served_pipeline: Served, ci: tuple[OidcIssuer, OidcIssuer],
                                   tmp_path: Path) -> None:
    _, gitlab = ci
    template = yaml.safe_load((ROOT / "ci" / "gitlab" / "software-statement.yml").read_text())
    job = template[".software-statement"]
    assert job["id_tokens"]["SSI_ID_TOKEN"]["aud"] == "$SSI_ISSUER_URL"
    script = [line for line in job["script"] if "pip install" not in line]
    id_token = gitlab.sign(gitlab_claims(gitlab.url, time.time()))
    env = {**served_pipeline.env, **job["variables"],
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GITLAB_CI": "true", "CI": "true",
           "CI_PIPELINE_ID": "1234", "CI_JOB_NAME": "mint-statement",
           "CI_PROJECT_PATH": "acme/desktop-agent", "SSI_ID_TOKEN": id_token,
           "SSI_ISSUER_URL": served_pipeline.url, "SSI_TEMPLATE": "desktop-agent",
           "SSI_SET": "software_version=2.0.0"}
    result = subprocess.run(["bash", "-c", "set -eo pipefail\n" + "\n".join(script)], env=env,
                            cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    claims = verify(served_pipeline, (tmp_path / job["variables"]["SSI_OUT"]).read_text())
    assert claims["software_version"] == "2.0.0"
    assert claims["provenance"]["publisher"] == "desktop-release"


def test_remote_mint_with_a_token_file_matches_local_output(served_pipeline: Served,
                                                            tmp_path: Path) -> None:
    secret = served_pipeline.token("ci-desktop", "--role", "minter", "--template",
                                   "desktop-agent", "--expires", "30d")
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    remote = subprocess.run([installed_issuer(), "mint", "desktop-agent", "--remote",
                             served_pipeline.url, "--token-file", str(token_file), "--set",
                             "software_version=3.1.0", "--json"], env=served_pipeline.env,
                            text=True, capture_output=True, timeout=60)
    assert remote.returncode == 0, remote.stderr
    local = served_pipeline.issuer("mint", "desktop-agent", "--set", "software_version=3.1.0",
                                   "--json")
    assert set(json.loads(remote.stdout)) == set(json.loads(local.stdout))
    plain = subprocess.run([installed_issuer(), "mint", "desktop-agent", "--remote",
                            served_pipeline.url, "--token-file", str(token_file), "--set",
                            "software_version=3.1.1", "--out", str(tmp_path / "s.jwt")],
                           env=served_pipeline.env, text=True, capture_output=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    claims = verify(served_pipeline, (tmp_path / "s.jwt").read_text())
    assert claims["software_version"] == "3.1.1" and "provenance" not in claims
    listed = served_pipeline.issuer("tokens", "list")
    assert "ci-desktop" in listed.stdout
    [row] = [r for r in json.loads(served_pipeline.issuer("tokens", "list", "--json").stdout)
             if r["name"] == "ci-desktop"]
    assert row["last_used_at"] is not None and row["expires_at"] is not None


REMOTE_ERRORS = [
    (["--remote", "http://issuer.example.com", "--token-file", "{token}"], 2, "https"),
    (["--remote", "{url}", "--token-file", "{token}", "--oidc"], 2, "exactly one"),
    (["--remote", "{url}"], 2, "exactly one"),
    (["--token-file", "{token}"], 2, "--remote"),
    (["--remote", "{url}", "--oidc"], 2, "no CI ID token"),
    (["--remote", "{url}", "--token-file", "{bad}"], 1, "invalid_token"),
    (["--remote", "{url}", "--token-file", "{missing}"], 2, "--token-file"),
    (["--remote", "http://127.0.0.1:9", "--token-file", "{token}"], 1, "unreachable"),
]


def test_remote_mint_errors(served_pipeline: Served, tmp_path: Path) -> None:
    """One line on stderr, the right exit code, nothing on stdout (one server for all cases)."""
    (tmp_path / "token").write_text(served_pipeline.token(
        "ci", "--role", "minter", "--template", "desktop-agent"))
    (tmp_path / "bad").write_text("ssi_AAAAAAAAAAAA." + "A" * 43)
    values = {"url": served_pipeline.url, "token": str(tmp_path / "token"),
              "bad": str(tmp_path / "bad"), "missing": str(tmp_path / "missing")}
    env = {k: v for k, v in served_pipeline.env.items()
           if not k.startswith(("GITHUB_", "ACTIONS_", "GITLAB_", "SSI_"))}
    for args, code, fragment in REMOTE_ERRORS:
        result = subprocess.run([installed_issuer(), "mint", "desktop-agent", "--set",
                                 "software_version=1", *[a.format(**values) for a in args]],
                                env=env, text=True, capture_output=True, timeout=60)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("issuer: error:") and fragment in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == "", args
