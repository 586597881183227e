"""``issuer serve``: run the HTTP service."""

from __future__ import annotations

import click

from issuer.core import checks

from .common import authority, config_option, fail


@click.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default: service.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: service.port).")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (method, path, status; never headers).")
def serve(host: str | None, port: int | None, access_log: bool) -> None:
    """Serve the issuer over HTTP: JWKS, metadata, mint and audit APIs (docs/http-api.md)."""
    from issuer.service.app import serve as run

    auth = authority()
    # The doctor's checks, now rather than at the first request: keys load, the database is
    # this issuer's, whole and intact, file modes are safe.
    report = checks.doctor(auth)
    if not report.ok:
        problems = report.problems()
        fail(f"refusing to serve: {problems[0]}"
             + (f" (and {len(problems) - 1} more: run `issuer doctor`)" if len(problems) > 1
                else ""))
    auth.check_open(auth.audit)  # what every other command checked when it opened
    run(auth, host or auth.config.service.host, port or auth.config.service.port,
        access_log=access_log)
