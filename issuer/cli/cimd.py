"""``issuer cimd``: Client ID Metadata Documents carrying software statements (docs/cimd.md)."""

from __future__ import annotations

from pathlib import Path

import click

from issuer.core.authority import local_principal
from issuer.core.cimd import export_document
from issuer.core.files import atomic_write

from .common import authority, claim_options, config_option, json_option
from .mint import parse_values


@click.group()
@config_option
def cimd() -> None:
    """Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document)."""


@cimd.command("export")
@config_option
@click.argument("template")
@click.option("--client-id", "client_id", required=True, metavar="URL",
              help="The https URL the document will be served at; it becomes the client_id.")
@claim_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the document to FILE instead of stdout.")
@json_option
def export(template: str, client_id: str, sets: tuple[str, ...], set_jsons: tuple[str, ...],
           out: Path | None, as_json: bool) -> None:
    """A Client ID Metadata Document for TEMPLATE, to host at --client-id.

    The document holds client_id (the URL), the template's client metadata and a freshly
    minted software_statement, recorded with channel cimd. It is checked against the draft
    first (https URL with a path, no shared-secret authentication, well under 5 KB): nothing
    is minted for a document that would be refused. The document is JSON either way;
    --json makes errors JSON too.

    \b
    Example:
      issuer cimd export mcp-connector --client-id https://acme.example.com/client.json \\
          --set software_version=1.4.2 --out client.json
    """
    body = export_document(authority(), template, client_id, parse_values(sets, set_jsons),
                           principal=local_principal())
    if out is not None:
        atomic_write(out, body + b"\n")
        click.echo(f"wrote the document for {client_id} to {out} ({len(body)} bytes); serve "
                   "it at exactly that URL as application/json, without redirects", err=True)
    else:
        click.echo(body.decode("utf-8"))
