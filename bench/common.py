"""Shared helpers for the benchmarks: timing, table printing, side-by-side ratios.

Every ratio is measured in the same run as its baseline (these machines are noisy: a number
from another run is not comparable). Each case repeats its measurement and keeps the best
(least disturbed) rate. Every row has a target; its verdict compares the unrounded ratio, so
0.599 against ">= 0.60" is MISSED, never "on the line".
"""

from __future__ import annotations

import os
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
    op: str  # ">=" or "<=" ("-" for a figure reported without a target)
    target: float | None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.op == ">=" else self.ratio <= self.target

    def cells(self) -> list[str]:
        if self.target is None:
            return [self.case, self.ours, self.baseline, f"{self.ratio:.3f}x", "(reported)", "-"]
        return [self.case, self.ours, self.baseline, f"{self.ratio:.3f}x",
                f"{self.op} {self.target:.2f}", "MET" if self.met else "MISSED"]


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
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)), flush=True)
        if i == 0:
            print("  ".join("-" * w for w in widths))


def machine() -> str:
    load = ", load %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {platform.platform()}{load}")
