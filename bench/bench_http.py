"""HTTP benchmarks with wrk (C, on loopback, 16 connections, one thread so the server keeps
one core): minting over HTTP, and serving the JWKS, each against a bare FastAPI app measured in
the same run with the same uvicorn settings (one worker, no access log).

- Mint: ``issuer serve`` with a minter token, ``POST /v1/statements`` (authentication, rate
  limiting, template checks, status index, signature, audit record, log entry and signed
  checkpoint, durable before the response) against a bare app that signs the same claims with
  joserfc and records nothing. Target >= 0.8x; p50/p99 of both are printed. Afterwards the
  audit store must hold at least as many statements as wrk counted successful responses.
- JWKS: ``GET /.well-known/jwks.json`` against a bare endpoint returning constant bytes.
  Target >= 1.0x.
- Memory: the served process's peak RSS (``VmHWM``) once the store holds 50,000 statements
  minted over HTTP and again at 100,000; the ratio must stay <= 1.10 (nothing kept per
  statement). The SQLite page caches fill within the first 20,000 or so and stay at their
  bound, so the half-way point compares like with like; the peak after the timed run is
  printed beside.

Both servers run under the same uvicorn stack (``uvicorn.run`` defaults: uvloop and httptools
when installed, else asyncio and h11; the row names which).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .common import Row

DURATION = 10
CONNECTIONS = 16
SERVED_MINTS = int(os.environ.get("BENCH_SERVED_MINTS", "100000"))


def stack() -> str:
    """What ``uvicorn.run`` picks for loop and http with its defaults (``auto``)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop}+{http}"


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM statements").fetchone()[0])


def mint_until(url: str, directory: Path, token: str, body: str, db: Path, total: int) -> None:
    """Keep wrk minting until the store holds ``total`` statements (untimed): wrk runs until
    it is interrupted, the store's count is polled, with a deadline."""
    process = subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", "-d3600s", "-s",
                                str(lua(directory, token, body)), url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 1200
    try:
        while count(db) < total:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wrk stopped before {total} statements were minted")
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def ensure_wrk() -> str | None:
    """wrk from Debian's packages, installed on first use when we may."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, script: Path | None = None, connections: int = CONNECTIONS) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def percentile(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rate": rate, "ok": total - (int(bad.group(1)) if bad else 0),
            "p50": percentile("50"), "p99": percentile("99"),
            "errors": 0 if errors is None else 1}


def lua(directory: Path, token: str | None, body: str) -> Path:
    path = directory / f"post-{token is not None}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = {json.dumps(body)}\n"
                    'wrk.headers["Content-Type"] = "application/json"\n' + auth)
    return path


def run(beside: Callable[[], None] | None = None) -> list[Row]:
    """``beside`` is started when the timed runs are done and the untimed minting for the
    memory row begins: the server keeps one core, ``beside`` may take the other."""
    if ensure_wrk() is None:
        print("wrk is not installed and can't be (not root, or no apt-get): HTTP rows skipped",
              file=sys.stderr)
        return []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    exe = str(Path(sys.executable).parent / "issuer")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        home = tmpdir / "issuer"
        subprocess.run([exe, "init", "--dir", str(home), "--issuer",
                        "https://connectors.example.com"], env=env, check=True, capture_output=True)
        config = home / "issuer.toml"
        config.write_text(config.read_text().replace('rate_limit = "600/minute"',
                                                     'rate_limit = "unlimited"'))
        token = json.loads(subprocess.run(
            [exe, "tokens", "create", "bench", "--role", "minter", "--template", "mcp-connector",
             "--json", "--config", str(config)], env=env, check=True, capture_output=True,
            text=True).stdout)["token"]
        port = free_port()
        ours = subprocess.Popen([exe, "serve", "--config", str(config), "--port", str(port),
                                 "--no-access-log"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/healthz", ours)
        body = json.dumps({"template": "mcp-connector", "claims": {"software_version": "1.0.0"}})
        sample = httpx.post(f"{base}/v1/statements", content=body,
                            headers={"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/json"}).json()
        claims = json.loads(__import__("issuer.core.encoding", fromlist=["x"]).b64url_decode(
            sample["software_statement"].split(".")[1]))
        jwks_bytes = httpx.get(f"{base}/.well-known/jwks.json").content
        db = home / "issuer.db"
        kid = json.loads(jwks_bytes)["keys"][0]["kid"]
        key_file = home / "keys" / f"{kid}.pem"
        (tmpdir / "claims.json").write_text(json.dumps(
            {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}))
        (tmpdir / "jwks.json").write_bytes(jwks_bytes)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_app.py")),
                                 str(bare_port), str(key_file), str(tmpdir / "claims.json"),
                                 str(tmpdir / "jwks.json")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        bare_base = f"http://127.0.0.1:{bare_port}"
        wait_ready(f"{bare_base}/jwks", bare)
        # JWKS first, each server in turn, best of two: serving the key set does not depend on
        # what was minted, and right after a mint run the server is still logging its audit
        # events (docs/performance.md).
        jwks_ours, jwks_bare = {"rate": 0.0}, {"rate": 0.0}
        for _ in range(2):
            jwks_ours = max(jwks_ours, wrk(f"{base}/.well-known/jwks.json"),
                            key=lambda r: r["rate"])
            jwks_bare = max(jwks_bare, wrk(f"{bare_base}/jwks"), key=lambda r: r["rate"])
        mint_bare = wrk(f"{bare_base}/mint", lua(tmpdir, None, body))
        bare.send_signal(signal.SIGTERM)
        bare.wait(timeout=30)
        before = count(db)
        mint_ours = wrk(f"{base}/v1/statements", lua(tmpdir, token, body))
        recorded = count(db) - before
        assert recorded >= mint_ours["ok"], (recorded, mint_ours)
        early = (count(db), peak_rss(ours.pid))
        if beside is not None:
            beside()
        mint_until(f"{base}/v1/statements", tmpdir, token, body, db, SERVED_MINTS // 2)
        half = (count(db), peak_rss(ours.pid))
        mint_until(f"{base}/v1/statements", tmpdir, token, body, db, SERVED_MINTS)
        late = (count(db), peak_rss(ours.pid))
        ours.send_signal(signal.SIGTERM)
        ours.wait(timeout=30)

    ratio = mint_ours["rate"] / mint_bare["rate"]
    rows.append(Row(f"HTTP mint, {CONNECTIONS} conns, {stack()} both (p50/p99 ours "
                    f"{mint_ours['p50']:.1f}/{mint_ours['p99']:.1f} ms, bare "
                    f"{mint_bare['p50']:.1f}/{mint_bare['p99']:.1f} ms); {recorded} recorded >= "
                    f"{mint_ours['ok']} ok", f"{mint_ours['rate']:,.0f}/s",
                    f"{mint_bare['rate']:,.0f}/s", ratio, ">=", 0.8))
    ratio = jwks_ours["rate"] / jwks_bare["rate"]
    rows.append(Row(f"JWKS GET, {CONNECTIONS} conns (p50/p99 ours {jwks_ours['p50']:.2f}/"
                    f"{jwks_ours['p99']:.2f} ms, bare {jwks_bare['p50']:.2f}/"
                    f"{jwks_bare['p99']:.2f} ms)", f"{jwks_ours['rate']:,.0f}/s",
                    f"{jwks_bare['rate']:,.0f}/s", ratio, ">=", 1.0))
    rows.append(Row(f"serve peak RSS after {late[0]:,} vs {half[0]:,} statements minted "
                    f"({early[1] / 2**20:,.0f} MiB after the timed run's {early[0]:,})",
                    f"{late[1] / 2**20:,.0f} MiB", f"{half[1] / 2**20:,.0f} MiB",
                    late[1] / half[1], "<=", 1.10))
    return rows
