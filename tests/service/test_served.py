"""The served behaviours against a real `issuer serve` subprocess on a free loopback port:
JWKS caching, key changes made with the CLI, concurrent mints, SIGKILL under load."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import installed_issuer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    home: Path
    url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def issuer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([installed_issuer(), *args, "--config", str(self.home / "issuer.toml")],
                              env=self.env, text=True, capture_output=True, timeout=60)

    def token(self, name: str, *args: str) -> str:
        out = self.issuer("tokens", "create", name, *args, "--json")
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["token"])


def start(home: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([installed_issuer(), "serve", "--config", str(home / "issuer.toml"),
                                "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"issuer serve exited: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("issuer serve did not become healthy")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}


def new_home(tmp_path: Path, issuer: str, **settings: str) -> tuple[Path, dict[str, str]]:
    """``issuer init`` in ``tmp_path/issuer``, then issuer.toml lines ``key = value`` replaced
    by ``settings`` (values as TOML text); returns the home and the environment to run in."""
    env = clean_env()
    home = tmp_path / "issuer"
    subprocess.run([installed_issuer(), "init", "--dir", str(home), "--issuer", issuer],
                   env=env, check=True, capture_output=True)
    config = home / "issuer.toml"
    text = config.read_text()
    for key, value in settings.items():
        text, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert found == 1, key
    config.write_text(text)
    return home, env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home, env = new_home(tmp_path, "https://issuer.example.com", jwks_max_age="2",
                         rate_limit='"unlimited"')
    port = free_port()
    process = start(home, env, port)
    yield Served(home, f"http://127.0.0.1:{port}", process, env)
    process.kill()
    process.wait(timeout=10)


def test_jwks_caching_over_real_http(served: Served) -> None:
    first = httpx.get(f"{served.url}/.well-known/jwks.json")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=2"
    assert first.headers["content-type"] == "application/jwk-set+json"
    etag = first.headers["etag"]
    assert httpx.get(f"{served.url}/.well-known/jwks.json",
                     headers={"If-None-Match": etag}).status_code == 304
    # A key generated with the CLI while the service runs is served within max-age.
    generated = served.issuer("keys", "generate", "--alg", "Ed25519", "--json")
    assert generated.returncode == 0, generated.stderr
    kid = json.loads(generated.stdout)["kid"]
    deadline = time.monotonic() + 30  # wait on the condition: the new kid is served
    while True:
        after = httpx.get(f"{served.url}/.well-known/jwks.json", headers={"If-None-Match": etag})
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after.status_code == 200
    assert kid in {k["kid"] for k in after.json()["keys"]}
    assert after.headers["etag"] != etag


def test_concurrent_clients_all_get_distinct_recorded_statements(served: Served) -> None:
    secret = served.token("ci", "--role", "minter", "--template", "desktop-agent")
    results: list[dict[str, str]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {secret}"},
                          timeout=30) as http:
            for i in range(40):
                r = http.post("/v1/statements", json={"template": "desktop-agent",
                                                      "claims": {"software_version": f"{n}.{i}"}})
                with lock:
                    (results.append(r.json()) if r.status_code == 201 else failures.append(r.text))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(results) == 320
    assert len({r["jti"] for r in results}) == 320
    assert len({r["digest"] for r in results}) == 320
    assert len({r["log_index"] for r in results}) == 320
    db = sqlite3.connect(served.home / "issuer.db")
    recorded = {row[0] for row in db.execute("SELECT jti FROM statements WHERE channel = 'http'")}
    assert recorded == {r["jti"] for r in results}
    events = [row[0] for row in db.execute("SELECT idx FROM events ORDER BY idx")]
    assert events == list(range(len(events)))


def test_sigkill_under_load_loses_no_returned_statement(served: Served) -> None:
    secret = served.token("load", "--role", "minter", "--template", "desktop-agent")
    returned: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    under_load = threading.Event()  # set once enough statements came back: kill mid-load

    def client() -> None:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {secret}"},
                          timeout=5) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v1/statements", json={"template": "desktop-agent",
                                                          "claims": {"software_version": "9"}})
                except httpx.HTTPError:
                    return  # the server died mid-request: nothing was returned
                if r.status_code == 201:
                    with lock:
                        returned.append(r.json()["jti"])
                        if len(returned) >= 40:
                            under_load.set()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    # Wait on the condition (however loaded the machine), not for a fixed time.
    assert under_load.wait(timeout=120), "the load did not get going before the kill"
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    db = sqlite3.connect(served.home / "issuer.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    recorded = {row[0] for row in db.execute("SELECT jti FROM statements")}
    missing = set(returned) - recorded
    assert not missing, f"{len(missing)} returned statements have no record"
    db.close()
    # ...and the server starts again cleanly and keeps minting.
    port = free_port()
    restarted = start(served.home, served.env, port)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/statements",
                       json={"template": "desktop-agent", "claims": {"software_version": "10"}},
                       headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 201
        listed = served.issuer("audit", "show", r.json()["jti"], "--json")
        assert json.loads(listed.stdout)["principal"] == "load"
    finally:
        restarted.kill()
        restarted.wait(timeout=10)


def run_demo(home: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    """`make run`'s program in ``home``, until it serves; returns its output so far."""
    env = clean_env()
    env["ISSUER_SERVICE_PORT"] = str(port)
    process = subprocess.Popen([str(Path(installed_issuer()).parent / "python"), "-m", "issuer.demo"],
                               cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if "Uvicorn running" in line or "Application startup complete" in line:
            return process, lines
    raise AssertionError("".join(lines))


def test_make_run_demo_serves_and_its_curl_mints(tmp_path: Path) -> None:
    port = free_port()
    process, lines = run_demo(tmp_path, port)
    try:
        output = "".join(lines)
        assert "initialised a demo issuer" in output
        secret = (tmp_path / "demo-minter.token").read_text().strip()
        assert secret in output  # printed once, on creation
        assert (tmp_path / "demo-minter.token").stat().st_mode & 0o777 == 0o600
        assert "curl -s -X POST" in output and "$(cat demo-minter.token)" in output
        r = httpx.post(f"http://127.0.0.1:{port}/v1/statements",
                       json={"template": "mcp-connector", "claims": {"software_version": "1.4.2"}},
                       headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 201, r.text
    finally:
        process.kill()
        process.wait(timeout=10)
    again, lines = run_demo(tmp_path, port)
    again.kill()
    again.wait(timeout=10)
    assert secret not in "".join(lines) and "initialised" not in "".join(lines)


def test_the_served_issuer_rotates_on_schedule(tmp_path: Path) -> None:
    home, env = new_home(tmp_path, "http://127.0.0.1:8000", rotation_period='"2s"',
                         jwks_max_age="1")
    port = free_port()
    process = start(home, env, port)
    try:
        first = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["active_kid"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").json()["active_kid"] != first:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no scheduled rotation within 15 s")
        db = sqlite3.connect(home / "issuer.db")
        channels = {row[0] for row in db.execute(
            "SELECT channel FROM events WHERE type = 'key.activated'")}
        assert channels == {"scheduler"}
    finally:
        process.kill()
        process.wait(timeout=10)


def test_revocation_while_serving(tmp_path: Path) -> None:
    """Revoke a statement while the service runs: verifiers refuse it once their cached list
    is older than its ttl, its sibling stays valid, and a restart changes nothing."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home, env = new_home(tmp_path, url, status_list_ttl="1")
    served = Served(home, url, start(home, env, port), env)
    try:
        minter = served.token("ci", "--role", "minter", "--template", "desktop-agent")
        admin = served.token("ops", "--role", "admin")
        tokens = [httpx.post(f"{url}/v1/statements", headers={"Authorization": f"Bearer {minter}"},
                             json={"template": "desktop-agent",
                                   "claims": {"software_version": v}}).json()
                  for v in ("1", "2")]
        bad, sibling = (t["software_statement"] for t in tokens)

        def cli_verify(token: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([installed_issuer(), "verify", token, "--jwks",
                                   f"{url}/.well-known/jwks.json", "--issuer", url],
                                  env=env, text=True, capture_output=True, timeout=60)

        from issuer.verifier.remote import StatusListClient
        from issuer.verifier.statement import verify

        jwks = httpx.get(f"{url}/.well-known/jwks.json").json()
        client = StatusListClient()  # one verifier process with a warm cache
        assert verify(bad, jwks=jwks, issuer=url, status=client)
        assert cli_verify(bad).returncode == 0
        r = httpx.post(f"{url}/v1/statements/{tokens[0]['jti']}/revoke",
                       headers={"Authorization": f"Bearer {admin}"}, json={"reason": "malicious"})
        assert r.status_code == 200 and r.json()["changed"] is True
        time.sleep(1.1)  # the list's ttl
        with pytest.raises(Exception, match="revoked by its issuer"):
            verify(bad, jwks=jwks, issuer=url, status=client)
        refused = cli_verify(bad)
        assert refused.returncode == 1 and "revoked by its issuer" in refused.stderr
        assert cli_verify(sibling).returncode == 0
        status = httpx.post(f"{url}/v1/status", json={"software_statement": bad}).json()
        assert status["status"] == "revoked" and status["reason"] == "malicious"
        assert httpx.post(f"{url}/v1/status",
                          json={"software_statement": sibling}).json()["status"] == "active"
        served.process.kill()
        served.process.wait(timeout=10)
        served.process = start(home, env, port)
        assert httpx.post(f"{url}/v1/status", json={"software_statement": bad}).json()["status"] == "revoked"
        assert cli_verify(bad).returncode == 1
    finally:
        served.process.kill()
        served.process.wait(timeout=10)
