"""``issuer doctor``: is this issuer fit to run? (docs/operations.md)"""

from __future__ import annotations

import click

from issuer.core import checks

from .common import authority, config_option, echo_json, echo_report, fail, json_option


@click.command()
@config_option
@json_option
def doctor(as_json: bool) -> None:
    """Check that this issuer can run: every key loads, the database is this issuer's and
    intact, file modes are safe.

    One line per check, each problem on its own line; exit 1 when any check failed.
    `issuer serve` runs the same checks before it starts.

    \b
    Example:
      issuer doctor --json
    """
    report = checks.doctor(authority())
    if as_json:
        echo_json(report.as_json())
    else:
        echo_report(report)
    if not report.ok:
        problems = report.problems()
        more = f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""
        fail(f"doctor found problems: {problems[0]}{more}")
