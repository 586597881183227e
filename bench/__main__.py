"""``make bench``: every benchmark case, each ratio against a baseline measured in this run.

Cases and methods: docs/performance.md. ``BENCH_SCALE_ENTRIES`` (default 1,000,000),
``BENCH_SERVED_MINTS`` and ``BENCH_MEMORY_BATCH`` (default 100,000 each) shrink the large cases
for a quick look; the table is only comparable at the defaults.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from . import (
    bench_http,
    bench_keys,
    bench_log,
    bench_memory,
    bench_mint,
    bench_replicas,
    bench_scale,
    bench_verify,
)
from .common import Row, machine, print_table


def _after(fill: bench_scale.Fill) -> list[Row]:
    """Wait for the scale case's filling process (it may outlast the HTTP case)."""
    began = time.perf_counter()
    fill.wait()
    print(f"  (waited {time.perf_counter() - began:.0f}s more for the scale case's "
          f"{fill.entries:,} statements)", flush=True)
    return []


def main() -> int:
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    rows = []
    # The scale case's million statements are filled by their own process while the HTTP
    # case mints its untimed 100,000 (the served process is held to about one core by the
    # GIL) and the memory case measures peaks; no timed case starts before the fill ends.
    fill = bench_scale.Fill()
    cases: tuple[tuple[str, Callable[[], list[Row]]], ...] = (
        ("batch mint", bench_mint.run),
        ("HTTP mint and JWKS", lambda: bench_http.run(beside=fill.start)),
        # Peak memory only, nothing timed: it may run while the fill goes on.
        ("memory", lambda: bench_memory.run() + _after(fill)),
        ("HTTP mint on replicas", bench_replicas.run), ("verify", bench_verify.run),
        ("log append", bench_log.run), ("key backends", bench_keys.run),
        ("scale", lambda: bench_scale.run(fill)))
    try:
        for name, case in cases:
            began = time.perf_counter()
            print(f"running {name}...", flush=True)
            rows += case()
            print(f"  {name}: {time.perf_counter() - began:.0f}s", flush=True)
    finally:
        fill.cleanup()
    print()
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f}s; {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
