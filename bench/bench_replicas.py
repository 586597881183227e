"""HTTP mint with two replicas on PostgreSQL beside one on SQLite, in the same run.

One ``issuer serve`` on a SQLite file takes 16 wrk connections; then two ``issuer serve``
processes on one PostgreSQL database (a throwaway cluster on loopback, tests/postgres.py) take
8 connections each, at the same time. The ratio is the two replicas' summed rate over the
single SQLite process's: what a second replica buys when the database orders every commit
(docs/operations.md). Afterwards the database must hold at least as many statements as wrk
counted successful responses. Informational: no target.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .bench_http import ensure_wrk, free_port, lua, wait_ready, wrk
from .common import Row

BODY = json.dumps({"template": "mcp-connector", "claims": {"software_version": "1.0.0"}})


def _home(exe: str, env: dict[str, str], home: Path, database: str) -> str:
    subprocess.run([exe, "init", "--dir", str(home), "--issuer", "https://connectors.example.com",
                    "--database", database], env=env, check=True, capture_output=True)
    config = home / "issuer.toml"
    config.write_text(config.read_text().replace('rate_limit = "600/minute"',
                                                 'rate_limit = "unlimited"'))
    return str(json.loads(subprocess.run(
        [exe, "tokens", "create", "bench", "--role", "minter", "--template", "mcp-connector",
         "--json", "--config", str(config)], env=env, check=True, capture_output=True,
        text=True).stdout)["token"])


def _serve(exe: str, env: dict[str, str], home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([exe, "serve", "--config", str(home / "issuer.toml"), "--port",
                                str(port), "--no-access-log"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/healthz", process)
    return process, base


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def run() -> list[Row]:
    if ensure_wrk() is None:
        print("wrk is not available: replica rows skipped", file=sys.stderr)
        return []
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.postgres import PostgresCluster

    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    exe = str(Path(sys.executable).parent / "issuer")
    cluster = PostgresCluster(durable=True)  # fsync on, like SQLite's synchronous = FULL
    cluster.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            token = _home(exe, env, tmpdir / "sqlite", "issuer.db")
            single, base = _serve(exe, env, tmpdir / "sqlite")
            one = wrk(f"{base}/v1/statements", lua(tmpdir, token, BODY))
            _stop([single])

            database = cluster.database()
            token = _home(exe, env, tmpdir / "pg", database)
            replicas = [_serve(exe, env, tmpdir / "pg") for _ in range(2)]
            script = lua(tmpdir, token, BODY)
            results: list[dict[str, float]] = []
            lock = threading.Lock()

            def load(base: str) -> None:
                outcome = wrk(f"{base}/v1/statements", script, connections=8)
                with lock:
                    results.append(outcome)

            threads = [threading.Thread(target=load, args=(b,)) for _, b in replicas]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            _stop([p for p, _ in replicas])
            recorded = int(cluster.sql(database, "SELECT COUNT(*) FROM statements")[0][0])
            ok = int(sum(r["ok"] for r in results))
            assert recorded >= ok, (recorded, ok)
    finally:
        cluster.close()
    two = sum(r["rate"] for r in results)
    ratio = two / one["rate"]
    return [Row(f"HTTP mint, 2 replicas on PostgreSQL (8 conns each) vs 1 on SQLite (16); "
                f"{recorded} recorded >= {ok} ok", f"{two:,.0f}/s", f"{one['rate']:,.0f}/s",
                ratio, "-", None)]
