"""Run a module's mutants against a chosen part of the suite in one process: a quick first
pass before `mutmut run`, which starts a fresh pytest for every mutant.

mutmut 3 (docs/testing.md) writes every mutant of a module into one file under ``mutants/``,
each function behind a trampoline that reads the ``MUTANT_UNDER_TEST`` environment variable
at every call, and records in ``mutants/mutmut-stats.json`` which tests ran each function.
This script sets the variable, runs those tests (within the path prefixes given, fastest
first, stopping at the first failure) with ``pytest.main`` and prints one line per mutant:
``NAME killed|survived|timeout SECONDS TESTS``. A mutant it kills is killed: the same tests fail
under ``mutmut run``. A survivor here survived only the tests chosen: confirm it with
``mutmut run NAME``, or read it and list it.

Run it from inside ``mutants/``, after a ``mutmut run`` made that directory and its stats::

    cd mutants
    ../.venv/bin/python tests/mutation_prefilter.py issuer/log/tlog.py \\
        --tests tests/log/,tests/store/ --out ../tlog-prefilter.txt

Lines already in ``--out`` are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def mutant_names(module: str) -> list[str]:
    """Every mutant mutmut generated for ``module`` (its ``.meta`` file lists them)."""
    meta = json.loads(Path(f"{module}.meta").read_text())
    return list(meta["exit_code_by_key"])


def tests_for(name: str, stats: dict[str, Any], prefixes: tuple[str, ...]) -> list[str]:
    """The tests that ran the mutant's function, within ``prefixes``, fastest first."""
    function = re.sub(r"__mutmut_\d+$", "", name)
    durations: dict[str, float] = stats["duration_by_test"]
    ran: list[str] = stats["tests_by_mangled_function_name"].get(function, [])
    return sorted((t for t in ran if t.startswith(prefixes)),
                  key=lambda t: durations.get(t, 1.0))


class Timeout(Exception):
    """Raised in the test that is running when a mutant's time is up."""


def run(name: str, tests: list[str], limit: float) -> str:
    """One mutant against ``tests``. A mutant that makes them hang (a loop whose exit was
    mutated away) is stopped after ``limit`` seconds: a timeout, as mutmut counts it."""
    os.environ["MUTANT_UNDER_TEST"] = name
    timed_out = False

    def time_up(signum: int, frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        raise Timeout("the mutant ran past its time limit")

    previous = signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.environ["MUTANT_UNDER_TEST"] = ""
    if timed_out:
        return "timeout"
    return {0: "survived", 1: "killed"}.get(int(code), f"error{int(code)}")


def time_limit(tests: list[str], stats: dict[str, Any]) -> float:
    """Ten times what the tests took when mutmut recorded them, and at least 30 s."""
    durations: dict[str, float] = stats["duration_by_test"]
    return max(30.0, 10 * sum(durations.get(t, 1.0) for t in tests))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the mutated module, e.g. issuer/log/tlog.py")
    parser.add_argument("--tests", required=True,
                        help="comma-separated path prefixes of the tests to run")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--only", type=Path, help="a file of mutant names, one a line")
    args = parser.parse_args(argv)
    if not Path("mutmut-stats.json").is_file():
        parser.error("run this from inside mutants/, after `mutmut run` made it")
    stats = json.loads(Path("mutmut-stats.json").read_text())
    if not args.only and not Path(f"{args.module}.meta").is_file():
        parser.error(f"no mutants of {args.module}: is it in [tool.mutmut] only_mutate?")
    names = args.only.read_text().split() if args.only else mutant_names(args.module)
    done = set()
    if args.out.exists():
        done = {line.split()[0] for line in args.out.read_text().splitlines() if line.strip()}
    prefixes = tuple(args.tests.split(","))
    # The chosen tests must pass on the code as written (no mutant: ""), or every verdict
    # below is noise.
    baseline = tests_for(names[0], stats, prefixes) if names else []
    if baseline and run("", baseline, time_limit(baseline, stats)) != "survived":
        parser.error(f"the tests fail without any mutant ({len(baseline)} tests of "
                     f"{names[0]}'s function): fix that first (is mutmut installed?)")
    with args.out.open("a") as out:
        for name in names:
            if name in done:
                continue
            tests = tests_for(name, stats, prefixes)
            started = time.monotonic()
            verdict = run(name, tests, time_limit(tests, stats)) if tests else "no-tests"
            print(name, verdict, f"{time.monotonic() - started:.1f}", len(tests), file=out,
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
