"""Scale: the cost of a mint with 1,000,000 entries already in the audit store and the log,
against 1,000; and ``issuer audit verify`` of the million against hashing the same bytes with
hashlib alone.

The stores are filled through the issuer itself (``mint_many`` in batches of 10,000: real
signatures, status entries, log nodes and checkpoints), so they are what a million
statements look like. The million is filled by its own process (``Fill``), which ``make
bench`` starts beside the HTTP case's untimed part (serving 100,000 mints for the memory
row: one core for the server, one for the fill) and waits for before the next timed case. The mint cost is that of single mints, each its own durable
transaction with a signed checkpoint (the HTTP path's worst case, without batching).
Target: cost at 1M / cost at 1k <= 1.25. ``audit verify`` recomputes every leaf, the tree,
every checkpoint comparison and every statement record; target >= 0.25x bare hashing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from issuer.core import checks
from issuer.core.authority import Authority, init_issuer
from issuer.core.statements import MintRequest

from .common import Row, best_rate

BATCH = 10_000
MINTS = 500


def filled(directory: Path, entries: int, workers: int = 0) -> Authority:
    list_size = 1_048_576  # roomy lists: a million statements fit in one
    auth = init_issuer(directory, issuer="https://connectors.example.com", alg="Ed25519",
                       actor="bench", env={})
    auth.close()
    config = directory / "issuer.toml"
    config.write_text(config.read_text().replace("status_list_size = 131072",
                                                 f"status_list_size = {list_size}"))
    auth = Authority.from_config(config, env={})
    done = 0
    while done < entries:
        n = min(BATCH, entries - done)
        auth.mint_many([MintRequest("desktop-agent", {"software_version": f"1.{done + i}"})
                        for i in range(n)], principal="bench", channel="cli",
                       workers=workers)
        done += n
    return auth


class Fill:
    """The large store, filled by ``python -m bench.bench_scale DIR N`` in its own process
    (untimed): ``start`` returns at once, ``wait`` returns once the store is complete."""

    def __init__(self, entries: int | None = None) -> None:
        self.entries = entries or int(os.environ.get("BENCH_SCALE_ENTRIES", "1000000"))
        self._tmp = tempfile.TemporaryDirectory()
        self.directory = Path(self._tmp.name) / "large"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._process is None:
            # Its own session, so that cleanup() ends its signing workers with it.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_scale", str(self.directory),
                 str(self.entries)], cwd=Path(__file__).parent.parent, start_new_session=True)

    def wait(self) -> None:
        self.start()
        assert self._process is not None
        if self._process.wait() != 0:
            raise RuntimeError(f"filling {self.entries:,} statements failed")

    @property
    def seconds(self) -> float:
        """How long the filling process took (it writes that down when done)."""
        return float((self.directory / "fill-seconds").read_text())

    def cleanup(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._tmp.cleanup()


def mint_rates(small: Authority, big: Authority, rounds: int = 5) -> tuple[float, float]:
    """Single mints per second on each store, best of ``rounds`` rounds taken in turn (the
    disk's fsync latency drifts; alternating keeps the drift out of the ratio). Also prints
    the CPU time per mint, which the fsync does not blur."""
    best = {id(small): 0.0, id(big): 0.0}
    cpu = {id(small): float("inf"), id(big): float("inf")}
    for r in range(rounds):
        for auth in (small, big):
            wall, started = time.perf_counter(), time.process_time()
            for i in range(MINTS // rounds):
                auth.mint(MintRequest("desktop-agent", {"software_version": f"9.{r}.{i}"}),
                          principal="bench", channel="http")
            count = MINTS // rounds
            best[id(auth)] = max(best[id(auth)], count / (time.perf_counter() - wall))
            cpu[id(auth)] = min(cpu[id(auth)], (time.process_time() - started) / count)
    print(f"(single mint CPU time: {cpu[id(small)] * 1e6:,.0f} us at 1,000 entries, "
          f"{cpu[id(big)] * 1e6:,.0f} us at the large size)")
    return best[id(small)], best[id(big)]


def run(fill: Fill | None = None) -> list[Row]:
    fill = fill or Fill()
    try:
        return _run(fill)
    finally:
        fill.cleanup()


def _run(fill: Fill) -> list[Row]:
    large = fill.entries
    fill.wait()
    big_auth = Authority.from_config(fill.directory / "issuer.toml", env={})
    fill_seconds = fill.seconds
    with tempfile.TemporaryDirectory() as tmp:
        small_auth = filled(Path(tmp) / "small", 1_000)
        small, big = mint_rates(small_auth, big_auth)
        small_auth.close()
        size = big_auth.log.size()
        entries = big_auth.audit.entries(0, size)  # the exact leaf bytes verify hashes

        def audit_verify() -> int:
            report = checks.audit_verify(big_auth)
            assert report.ok and report.log is not None, report.problems()
            return report.log.entries

        def hashing() -> int:
            for entry in entries:
                hashlib.sha256(b"\x00" + entry).digest()
            return len(entries)

        verify_rate = best_rate(audit_verify, repeats=1)
        hash_rate = best_rate(hashing, repeats=1)
        big_auth.close()
    cost_ratio = small / big  # time per mint at 1M over time per mint at 1k
    print(f"(filled {large:,} statements in {fill_seconds:.0f}s; tree size {size:,})")
    return [
        Row(f"single durable mint at {large:,} vs 1,000 entries (cost ratio)",
            f"{big:,.0f}/s", f"{small:,.0f}/s", cost_ratio, "<=", 1.25),
        Row(f"audit verify {size:,} entries vs hashlib over the same bytes",
            f"{verify_rate:,.0f}/s", f"{hash_rate:,.0f}/s", verify_rate / hash_rate, ">=", 0.25),
    ]


if __name__ == "__main__":  # the filling process of ``Fill``
    began = time.perf_counter()
    # No signing workers: this process runs beside the served minting, which needs the other
    # core (with workers both ran a third slower, 2026-12-07).
    filled(Path(sys.argv[1]), int(sys.argv[2]), workers=0).close()
    (Path(sys.argv[1]) / "fill-seconds").write_text(f"{time.perf_counter() - began:.1f}")
