"""`issuer serve` at its edges, as a real process on loopback: a busy port, an address beyond
loopback, structured JSON logs without secrets, Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_conventions import clean_env, read_until
from tests.conftest import installed_issuer
from tests.service.test_served import free_port


@pytest.fixture
def home(tmp_path: Path) -> Path:
    subprocess.run([installed_issuer(), "init", "--dir", str(tmp_path / "issuer")],
                   env=clean_env(), check=True, capture_output=True)
    return tmp_path / "issuer"


def issuer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([installed_issuer(), *args, "--config", str(home / "issuer.toml")],
                          env=clean_env(), capture_output=True, text=True, timeout=60)


def test_a_busy_port_is_one_line_and_exit_1(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = issuer(home, "serve", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (f"issuer: error: cannot listen on 127.0.0.1:{port}: the address is "
                             "in use (another process listens there: stop it, or choose another "
                             "--port)\n")
    assert "startup" not in result.stdout + result.stderr  # nothing pretended to start


def test_beyond_loopback_warns_and_a_foreign_address_fails(home: Path) -> None:
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this machine: the warning shows and the
    # bind fails, so the test never listens beyond loopback.
    result = issuer(home, "serve", "--host", "192.0.2.1", "--port", str(free_port()))
    assert result.returncode == 1
    warning, error = result.stderr.splitlines()
    assert warning.startswith("issuer: warning: serving plain HTTP on 192.0.2.1:")
    assert "TLS reverse proxy" in warning
    assert error.startswith("issuer: error: cannot listen on 192.0.2.1:")
    assert "not one of this machine's" in error


class Lines:
    """The stderr of a running server, collected line by line by a reader thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in iter(process.stderr.readline, ""):
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: found(self.lines), timeout), "".join(self.lines)


@pytest.fixture
def json_served(home: Path) -> Iterator[tuple[str, subprocess.Popen[str], Lines]]:
    port = free_port()
    process = subprocess.Popen(
        [installed_issuer(), "serve", "--config", str(home / "issuer.toml"), "--port", str(port),
         "--log-format", "json"], env=clean_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    lines = Lines(process)
    lines.wait_for(lambda seen: any("Application startup complete" in line for line in seen))
    yield f"http://127.0.0.1:{port}", process, lines
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_json_logs_one_object_per_request_and_per_audit_event(
        home: Path, json_served: tuple[str, subprocess.Popen[str], Lines]) -> None:
    url, _, lines = json_served
    created = issuer(home, "tokens", "create", "ci", "--role", "minter", "--template",
                     "desktop-agent", "--json")
    secret = json.loads(created.stdout)["token"]
    minted = httpx.post(f"{url}/v1/statements", headers={"Authorization": f"Bearer {secret}"},
                        json={"template": "desktop-agent",
                              "claims": {"software_version": "1.0"}}, timeout=30)
    assert minted.status_code == 201
    jti = minted.json()["jti"]

    def objects(seen: list[str]) -> list[dict[str, object]]:
        return [json.loads(line) for line in seen]

    def logged(seen: list[str]) -> bool:
        kinds = {(o.get("kind"), o.get("type") or o.get("path")) for o in objects(seen)}
        return {("request", "/v1/statements"), ("audit", "statement.issued"),
                ("audit", "token.created")} <= kinds

    lines.wait_for(logged)
    docs = objects(lines.lines)  # every line is one JSON object: json.loads would fail otherwise
    request = next(o for o in docs if o.get("path") == "/v1/statements")
    assert (request["method"], request["status"], request["client"]) == ("POST", 201, "127.0.0.1")
    issued = next(o for o in docs if o.get("type") == "statement.issued")
    assert issued["subject"] == jti and issued["actor"] == "ci" and issued["channel"] == "http"
    token_event = next(o for o in docs if o.get("type") == "token.created")
    assert token_event["channel"] == "cli"  # the CLI's events reach the service's log too
    text = "".join(lines.lines)
    assert secret not in text and secret.split(".")[1] not in text
    assert "Bearer" not in text and minted.json()["software_statement"] not in text


def test_ctrl_c_stops_the_server_cleanly_with_130(
        json_served: tuple[str, subprocess.Popen[str], Lines]) -> None:
    url, process, lines = json_served
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    lines.thread.join(timeout=30)
    assert lines.lines[-1] == ("issuer: error: stopped (Ctrl-C) after answering the requests in "
                               "flight\n")
    assert any("Application shutdown complete" in line for line in lines.lines)


def test_text_logs_name_audit_events_too(home: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [installed_issuer(), "serve", "--config", str(home / "issuer.toml"), "--port",
         str(port)], env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        read_until(process, "Application startup complete")
        assert issuer(home, "tokens", "create", "ops", "--role", "admin").returncode == 0
        assert "INFO:     issuer.audit: token.created ops by" in read_until(process,
                                                                         "token.created")[-1]
    finally:
        process.kill()
        process.wait(timeout=30)


def test_sigterm_as_systemd_sends_it_stops_cleanly(
        json_served: tuple[str, subprocess.Popen[str], Lines]) -> None:
    _, process, lines = json_served
    process.terminate()
    assert process.wait(timeout=60) == -signal.SIGTERM  # uvicorn re-raises it after shutdown
    lines.thread.join(timeout=30)
    assert any("Application shutdown complete" in line for line in lines.lines)
    assert not any("error" in json.loads(line)["level"] for line in lines.lines)
