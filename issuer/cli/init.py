"""``issuer init``: a new issuer home."""

from __future__ import annotations

from pathlib import Path

import click

from issuer.core.authority import init_issuer, local_principal

from .common import ALG_CHOICES, config_option


@click.command()
@config_option
@click.option("--issuer", "issuer_url", default="http://127.0.0.1:8000", show_default=True,
              help="The iss claim: https, or http only on localhost.")
@click.option("--alg", type=click.Choice(ALG_CHOICES), default="ES256", show_default=True,
              help="Algorithm of the first signing key.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Issuer home to create.")
@click.option("--key-backend", default="file", show_default=True, metavar="URI",
              help="Where private keys live: file, pkcs11:token=...?... or awskms:region=... "
                   "(see docs/keys.md).")
def init(issuer_url: str, alg: str, directory: Path, key_backend: str) -> None:
    """Create an issuer: config, first active key, example templates, database.

    Refuses to overwrite an existing issuer.
    """
    auth = init_issuer(directory, issuer=issuer_url, alg=alg, actor=local_principal(),
                       key_backend=key_backend)
    try:
        key = auth.keystore.active()
        click.echo(f"initialised issuer {issuer_url} in {directory.resolve()}")
        click.echo(f"  config:    {auth.config.path}")
        click.echo(f"  key:       {key.kid} ({key.alg}, active) in "
                   f"{auth.keystore.backend.describe()}")
        click.echo(f"  templates: {', '.join(auth.templates.names())}")
        click.echo(f"  database:  {auth.config.database}")
        if auth.keystore.files.passphrase.configured() is None:
            what = "the private key files" if key_backend == "file" else "the log's key file"
            click.echo(f"warning: {what} in {auth.config.keys_dir}: NOT encrypted; "
                       "encrypt them with `issuer keys passphrase` and set "
                       "ISSUER_KEY_PASSPHRASE_FILE (or ISSUER_KEY_PASSPHRASE)", err=True)
    finally:
        auth.close()
