"""``issuer serve``: run the HTTP service."""

from __future__ import annotations

import click

from .common import authority, config_option


@click.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default: service.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: service.port).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving the port; they share the database (docs/operations.md).")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (method, path, status; never headers).")
def serve(host: str | None, port: int | None, workers: int, access_log: bool) -> None:
    """Serve the issuer over HTTP: JWKS, metadata, mint and audit APIs (docs/http-api.md)."""
    from issuer.service.app import serve as run

    auth = authority()
    auth.keystore.signer()  # fail now, not at the first request, if the key can't be loaded
    auth.audit.check_head()  # and if the database can't be reached or was rolled back
    run(auth, host or auth.config.service.host, port or auth.config.service.port,
        access_log=access_log, workers=workers)
