"""Several `issuer serve` processes on one database, under load, while things go wrong: two
replicas on PostgreSQL (one SIGKILLed mid-load, PostgreSQL stopped and restarted during it),
and `issuer serve --workers 2` on SQLite (a worker SIGKILLed mid-load).

Afterwards: every statement a client got is recorded, the log is contiguous and verifies
(`issuer audit verify` recomputes the root), no status list index or jti is used twice, the
outage answered 503 with the JSON error (never a 500), and a token's rate limit held across
all processes together."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import installed_issuer
from tests.postgres import PostgresCluster, wait_for
from tests.service.test_served import clean_env, free_port, start

TEMPLATE = "desktop-agent"


class Load:
    """Client threads minting against some URLs until stopped; what they got back."""

    def __init__(self, urls: list[str], secret: str, alive: Callable[[str], bool]) -> None:
        self.returned: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.bodies: list[dict[str, Any]] = []  # non-201 answers
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(url, secret, alive))
                        for url in urls for _ in range(3)]
        for thread in self.threads:
            thread.start()

    def _client(self, url: str, secret: str, alive: Callable[[str], bool]) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"},
                          timeout=30) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/v1/statements", json={"template": TEMPLATE, "claims": {
                        "software_version": "1"}})
                except httpx.HTTPError:  # its server died mid-request: nothing returned
                    if not alive(url):
                        return
                    continue
                with self.lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 201:
                        self.returned.append(r.json()["jti"])
                    else:
                        self.bodies.append(r.json())

    def count(self) -> int:
        with self.lock:
            return len(self.returned)

    def more(self, n: int, timeout: float = 60) -> None:
        """Wait until ``n`` more statements have been returned."""
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def issuer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([installed_issuer(), *args, "--config", str(home / "issuer.toml")],
                          env=clean_env(), text=True, capture_output=True, timeout=120)


def init_home(tmp_path: Path, database: str) -> Path:
    home = tmp_path / "issuer"
    done = subprocess.run([installed_issuer(), "init", "--dir", str(home), "--issuer",
                           "https://issuer.example.com", "--database", database],
                          env=clean_env(), text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config = home / "issuer.toml"
    config.write_text(config.read_text().replace("jwks_max_age = 300", "jwks_max_age = 2"))
    return home


def token(home: Path, name: str, limit: str) -> str:
    out = issuer(home, "tokens", "create", name, "--role", "minter", "--template", TEMPLATE,
                 "--rate-limit", limit, "--json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["token"])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def assert_rate_limit_holds_across(urls: list[str], secret: str) -> None:
    """6/minute lets six through at once, then refuses: wherever the requests land."""
    codes = Counter(httpx.post(f"{urls[i % len(urls)]}/v1/statements",
                               json={"template": TEMPLATE, "claims": {"software_version": "2"}},
                               headers={"Authorization": f"Bearer {secret}"}, timeout=30
                               ).status_code for i in range(10))
    assert codes == {201: 6, 429: 4}, codes


def assert_recorded_and_consistent(home: Path, load: Load,
                                   rows: Callable[[str], list[tuple[Any, ...]]]) -> None:
    assert load.statuses[500] == 0 and set(load.statuses) <= {201, 503}, load.statuses
    assert all(b["error"] == "temporarily_unavailable" for b in load.bodies), load.bodies[:3]
    assert len(set(load.returned)) == len(load.returned)
    recorded = {row[0] for row in rows("SELECT jti FROM statements")}
    missing = set(load.returned) - recorded
    assert not missing, f"{len(missing)} returned statements have no record"
    indices = [row[0] for row in rows("SELECT idx FROM events ORDER BY idx")]
    assert indices == list(range(len(indices)))
    assert rows("SELECT status_list, status_idx FROM statements GROUP BY status_list, "
                "status_idx HAVING COUNT(*) > 1") == []
    verified = issuer(home, "audit", "verify")
    assert verified.returncode == 0, verified.stderr


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    # SIGTERM: a supervisor stops its worker processes on it; SIGKILL would leave them running.
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_two_replicas_on_postgresql_survive_a_kill_and_a_database_restart(
        tmp_path: Path, postgres: PostgresCluster,
        processes: list[subprocess.Popen[bytes]]) -> None:
    database = postgres.database()
    home = init_home(tmp_path, database)
    load_secret = token(home, "load", "unlimited")
    limited = token(home, "limited", "6/minute")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    processes += [start(home, clean_env(), port) for port in ports]
    by_url = dict(zip(urls, processes))
    load = Load(urls, load_secret, lambda url: by_url[url].poll() is None)
    try:
        load.more(30)
        # The database goes away: affected requests get 503 and /healthz says so...
        postgres.stop()
        down = httpx.get(f"{urls[0]}/healthz", timeout=30)
        assert down.status_code == 503 and down.json()["error"] == "temporarily_unavailable"
        refused = httpx.post(f"{urls[1]}/v1/statements", json={"template": TEMPLATE},
                             headers={"Authorization": f"Bearer {load_secret}"}, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        # ...and both recover by themselves once it is back.
        postgres.start()
        wait_for(lambda: all(healthy(url) for url in urls), 60)
        load.more(30)
        processes[0].send_signal(signal.SIGKILL)  # a replica dies mid-load
        processes[0].wait(timeout=10)
        load.more(30)  # the other carries on
    finally:
        load.finish()
    # A key made on one machine's CLI is served by the surviving replica within max-age.
    generated = issuer(home, "keys", "generate", "--alg", "Ed25519", "--json")
    kid = json.loads(generated.stdout)["kid"]
    wait_for(lambda: kid in {k["kid"] for k in httpx.get(
        f"{urls[1]}/.well-known/jwks.json").json()["keys"]}, 10)
    restarted = start(home, clean_env(), ports[0])
    processes.append(restarted)
    assert_rate_limit_holds_across(urls, limited)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return postgres.sql(database, sql)

    assert_recorded_and_consistent(home, load, rows)


def worker_pids(process: subprocess.Popen[bytes]) -> list[int]:
    """The uvicorn worker processes under ``issuer serve --workers N``."""
    children: list[int] = []
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(pid) for pid in text]
    workers = []
    for pid in children:  # skip multiprocessing's resource tracker
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"resource_tracker" not in cmdline:
            workers.append(pid)
    return workers


def test_serve_with_two_workers_on_sqlite(tmp_path: Path,
                                          processes: list[subprocess.Popen[bytes]]) -> None:
    home = init_home(tmp_path, "issuer.db")
    load_secret = token(home, "load", "unlimited")
    limited = token(home, "limited", "6/minute")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes.append(start(home, clean_env(), port, "--workers", "2"))
    wait_for(lambda: len(worker_pids(processes[0])) == 2, 30)
    load = Load([url], load_secret, lambda _: processes[0].poll() is None)
    try:
        load.more(30)
        os.kill(worker_pids(processes[0])[0], signal.SIGKILL)  # one worker dies mid-load
        load.more(30)  # the other (and the one uvicorn starts in its place) carry on
    finally:
        load.finish()
    assert_rate_limit_holds_across([url], limited)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(home / "issuer.db") as db:
            return db.execute(sql).fetchall()

    assert_recorded_and_consistent(home, load, rows)
