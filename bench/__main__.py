"""``make bench``: every benchmark case, each ratio against a baseline measured in this run.

Cases and methods: docs/performance.md. ``BENCH_SCALE_ENTRIES`` (default 1,000,000),
``BENCH_SERVED_MINTS`` and ``BENCH_MEMORY_BATCH`` (default 100,000 each) shrink the large cases
for a quick look; the table is only comparable at the defaults.
"""

from __future__ import annotations

import sys
import time

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
from .common import machine, print_table


def main() -> int:
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    rows = []
    for name, case in (("batch mint", bench_mint), ("HTTP mint and JWKS", bench_http),
                       ("HTTP mint on replicas", bench_replicas),
                       ("verify", bench_verify), ("log append", bench_log),
                       ("key backends", bench_keys), ("scale", bench_scale),
                       ("memory", bench_memory)):
        began = time.perf_counter()
        print(f"running {name}...", flush=True)
        rows += case.run()
        print(f"  {name}: {time.perf_counter() - began:.0f}s", flush=True)
    print()
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f}s; {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
