"""Shared helpers for the benchmarks: timing, table printing, side-by-side ratios.

Every ratio is measured in the same run as its baseline (these machines are noisy: a number
from another run is not comparable). Each case repeats its measurement and keeps the best
(least disturbed) rate.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    case: str
    ours: str
    baseline: str
    ratio: float
    target: str
    met: bool | None

    def cells(self) -> list[str]:
        verdict = "-" if self.met is None else ("met" if self.met else "MISSED")
        return [self.case, self.ours, self.baseline, f"{self.ratio:.2f}x", self.target, verdict]


def best_rate(fn: Callable[[], int], repeats: int = 3) -> float:
    """Operations per second of ``fn`` (which returns how many operations it did): best of N."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        ops = fn()
        elapsed = time.perf_counter() - start
        best = max(best, ops / elapsed)
    return best


def print_table(rows: list[Row]) -> None:
    headers = ["case", "ours", "baseline", "ratio", "target", "verdict"]
    table = [headers, *[r.cells() for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
