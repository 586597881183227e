"""``make bench``: every benchmark case, with its ratio against a baseline measured in this run."""

from __future__ import annotations

import sys
import time

from . import bench_log
from .common import machine, print_table


def main() -> int:
    print(f"machine: {machine()}")
    started = time.perf_counter()
    rows = []
    rows += bench_log.run()
    print()
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
