"""``issuer backup PATH`` and ``issuer restore PATH``: an online copy of the database, and
putting one back (docs/operations.md, "Backup and restore")."""

from __future__ import annotations

from pathlib import Path

import click

from issuer.core import checks
from issuer.core.authority import local_principal
from issuer.core.errors import Conflict

from .common import authority, config_option, echo_json, json_option


@click.command()
@config_option
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def backup(path: Path, as_json: bool) -> None:
    """Copy the database to PATH (a new file, 0600) while the issuer keeps running.

    The copy is consistent (SQLite's online backup) and checked before this returns. Keep
    the keys directory's own backup beside it: the log key and its high-water mark live there.

    \b
    Example:
      issuer backup /backups/issuer-2026-11-27.db
    """
    if path.exists():
        raise Conflict(f"{path} exists; a backup is written to a new file only")
    entries = checks.backup(authority(), path)
    if as_json:
        echo_json({"path": str(path), "log_entries": entries})
        return
    click.echo(f"backed up {entries} log entries to {path}")
    click.echo("restore: stop the issuer, then `issuer restore "
               f"{path}` (docs/operations.md, \"Backup and restore\")")


@click.command()
@config_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--accept-loss", is_flag=True,
              help="Accept a backup older than the log's high-water mark: the entries after "
                   "it are lost, and the loss is logged.")
@json_option
def restore(path: Path, accept_loss: bool, as_json: bool) -> None:
    """Put a backup made by `issuer backup` in place of the database (issuer stopped).

    The backup must be this issuer's and pass every check. When it is older than the newest
    checkpoint the issuer signed, the newer entries are lost: that is refused unless
    --accept-loss, and then recorded in the log itself.

    \b
    Example:
      issuer restore /backups/issuer-2026-11-27.db
    """
    lost = checks.restore(authority(), path, accept_loss=accept_loss, actor=local_principal())
    if as_json:
        echo_json({"restored_from": str(path), "lost_entries": lost})
        return
    click.echo(f"restored the database from {path}")
    if lost:
        click.echo(f"warning: {lost} log entries newer than the backup are lost; the loss is "
                   "recorded in the log (log.restored)", err=True)
