"""``issuer serve``: run the HTTP service."""

from __future__ import annotations

import click

from issuer.core import checks

from .common import authority, config_option, fail, on_interrupt, warn


@click.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default: service.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: service.port).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving the port; they share the database (docs/operations.md).")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (method, path, status; never headers).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="json: one JSON object per line, per request and per audit event.")
def serve(host: str | None, port: int | None, workers: int, access_log: bool,
          log_format: str) -> None:
    """Serve the issuer over HTTP: JWKS, metadata, mint and audit APIs (docs/http-api.md).

    The address is bound first: a busy port is one line and exit 1. Binding beyond loopback
    warns (plain HTTP: put a TLS reverse proxy in front, docs/operations.md). Ctrl-C stops
    it after the requests in flight (exit 130).

    \b
    Example:
      issuer serve --port 8000 --log-format json
    """
    from issuer.service.app import serve as run
    from issuer.service.listen import is_loopback, listen

    auth = authority()
    host = host or auth.config.service.host
    port = port or auth.config.service.port
    if not is_loopback(host):
        warn(f"serving plain HTTP on {host}:{port}, beyond loopback: API tokens would cross "
             "the network unencrypted; bind to 127.0.0.1 behind a TLS reverse proxy "
             "(docs/operations.md)")
    # The doctor's checks, now rather than at the first request: keys load, the database is
    # this issuer's, whole and intact, file modes are safe.
    report = checks.doctor(auth)
    if not report.ok:
        problems = report.problems()
        fail(f"refusing to serve: {problems[0]}"
             + (f" (and {len(problems) - 1} more: run `issuer doctor`)" if len(problems) > 1
                else ""))
    auth.check_open(auth.audit)  # what every other command checked when it opened
    auth.audit.check_head()  # and the database was not rolled back behind this process
    sock = listen(host, port)
    on_interrupt("stopped (Ctrl-C) after answering the requests in flight")
    run(auth, host, port, access_log=access_log, log_format="json" if log_format == "json"
        else "text", sock=sock, workers=workers)
