"""HTTP benchmarks with wrk (C, on loopback, 16 connections, one thread so the server keeps
one core): minting over HTTP, and serving the JWKS, each against a bare FastAPI app measured in
the same run with the same uvicorn settings (one worker, no access log).

- Mint: ``issuer serve`` with a minter token, ``POST /v1/statements`` (authentication, rate
  limiting, template checks, status index, signature, audit record, log entry and signed
  checkpoint, durable before the response) against a bare app that signs the same claims with
  joserfc and records nothing. Target >= 0.6x. Afterwards the audit store must hold at least
  as many statements as wrk counted successful responses.
- JWKS: ``GET /.well-known/jwks.json`` against a bare endpoint returning constant bytes.
  Target >= 0.9x.
"""

from __future__ import annotations

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
from pathlib import Path

import httpx

from .common import Row

DURATION = 10
CONNECTIONS = 16


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


def run() -> list[Row]:
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
        before = sqlite3.connect(home / "issuer.db").execute(
            "SELECT COUNT(*) FROM statements").fetchone()[0]
        mint_ours = wrk(f"{base}/v1/statements", lua(tmpdir, token, body))
        jwks_ours = wrk(f"{base}/.well-known/jwks.json")
        ours.send_signal(signal.SIGTERM)
        ours.wait(timeout=30)
        recorded = sqlite3.connect(home / "issuer.db").execute(
            "SELECT COUNT(*) FROM statements").fetchone()[0] - before
        assert recorded >= mint_ours["ok"], (recorded, mint_ours)

        kid = json.loads(jwks_bytes)["keys"][0]["kid"]
        key_file = home / "keys" / f"{kid}.pem"
        (tmpdir / "claims.json").write_text(json.dumps(
            {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}))
        (tmpdir / "jwks.json").write_bytes(jwks_bytes)
        port = free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_app.py")),
                                 str(port), str(key_file), str(tmpdir / "claims.json"),
                                 str(tmpdir / "jwks.json")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        bare_base = f"http://127.0.0.1:{port}"
        wait_ready(f"{bare_base}/jwks", bare)
        mint_bare = wrk(f"{bare_base}/mint", lua(tmpdir, None, body))
        jwks_bare = wrk(f"{bare_base}/jwks")
        bare.send_signal(signal.SIGTERM)
        bare.wait(timeout=30)

    ratio = mint_ours["rate"] / mint_bare["rate"]
    rows.append(Row(f"HTTP mint, {CONNECTIONS} conns (p50/p99 ours {mint_ours['p50']:.1f}/"
                    f"{mint_ours['p99']:.1f} ms, bare {mint_bare['p50']:.1f}/"
                    f"{mint_bare['p99']:.1f} ms); {recorded} recorded >= {mint_ours['ok']} ok",
                    f"{mint_ours['rate']:,.0f}/s", f"{mint_bare['rate']:,.0f}/s", ratio,
                    ">= 0.60", ratio >= 0.6))
    ratio = jwks_ours["rate"] / jwks_bare["rate"]
    rows.append(Row(f"JWKS GET, {CONNECTIONS} conns (p50/p99 ours {jwks_ours['p50']:.2f}/"
                    f"{jwks_ours['p99']:.2f} ms)", f"{jwks_ours['rate']:,.0f}/s",
                    f"{jwks_bare['rate']:,.0f}/s", ratio, ">= 0.90", ratio >= 0.9))
    return rows
