"""Memory of ``issuer mint --batch``: the peak RSS of the real command (its own process, as a
user runs it) minting 100,000 statements, against the same command minting 10,000.

The batch is one all-or-nothing transaction whose statements are output only after it commits,
so the command holds the batch's statements until then; nothing else may grow with the number
of statements. The ratio is the peak's growth per added statement over the bytes of one output
statement line; target <= 4.0 (the request read, the statement held, and their bookkeeping).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import Row

SIZES = (10_000, int(os.environ.get("BENCH_MEMORY_BATCH", "100000")))


#: Runs the command and prints its peak RSS. A fresh, small interpreter in between: a child's
#: ``ru_maxrss`` starts from its parent's RSS at fork, and the benchmark process is large.
_MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], "
            "stdout=subprocess.DEVNULL).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def peak_rss_of_batch(exe: str, config: Path, batch: Path, out: Path) -> int:
    """Run ``issuer mint --batch`` to completion; its peak RSS in bytes (getrusage)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    done = subprocess.run([sys.executable, "-c", _MEASURE, exe, "mint", "--batch", str(batch),
                           "--out", str(out), "--config", str(config)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout) * 1024  # kilobytes on Linux


def run() -> list[Row]:
    exe = str(Path(sys.executable).parent / "issuer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "issuer"
        subprocess.run([exe, "init", "--dir", str(home), "--issuer",
                        "https://connectors.example.com"], env=env, check=True,
                       capture_output=True)
        for n in SIZES:
            batch = Path(tmp) / f"batch-{n}.jsonl"
            batch.write_text("".join(json.dumps({"template": "mcp-connector", "claims": {
                "software_version": f"1.0.{i}"}}) + "\n" for i in range(n)))
            out = Path(tmp) / f"out-{n}.jsonl"
            peaks[n] = peak_rss_of_batch(exe, home / "issuer.toml", batch, out)
            assert sum(1 for _ in out.open()) == n, "every statement must be output"
            line = out.stat().st_size / n
    small, large = SIZES
    per = (peaks[large] - peaks[small]) / (large - small)
    return [Row(f"mint --batch peak RSS {large:,} (vs {small:,}): growth per statement "
                f"{per:,.0f} B over a {line:,.0f} B output line", f"{peaks[large] / 2**20:,.0f} MiB",
                f"{peaks[small] / 2**20:,.0f} MiB", per / line, "<=", 4.0)]
