"""``issuer revoke``: revoke, suspend or unsuspend a statement (docs/revocation.md)."""

from __future__ import annotations

import click

from issuer.core.authority import local_principal
from issuer.core.clock import rfc3339

from .common import IDENTIFIER_ARGS, authority, config_option, echo_json, json_option


@click.command(context_settings=IDENTIFIER_ARGS)
@config_option
@click.argument("ref", metavar="JTI|DIGEST")
@click.option("--reason", required=True, help="Why (free text, kept in the audit record).")
@click.option("--suspend", "action", flag_value="suspended",
              help="Suspend instead of revoking (can be lifted with --unsuspend).")
@click.option("--unsuspend", "action", flag_value="active", help="Lift a suspension.")
@json_option
def revoke(ref: str, reason: str, action: str | None, as_json: bool) -> None:
    """Revoke a statement (INVALID in its Token Status List), or suspend / un-suspend it.

    Revocation is final; revoking twice changes nothing and says so.

    \b
    Example:
      issuer revoke JTI --reason "leaked in a public CI log"
    """
    target = action or "revoked"
    record, changed = authority().set_status(ref, target, reason, actor=local_principal(),
                                             channel="cli")
    if as_json:
        echo_json({"jti": record.jti, "digest": record.digest, "status": target,
                   "changed": changed, "revoked_at": record.revoked_at,
                   "revocation_reason": record.revocation_reason})
        return
    verb = {"revoked": "revoked", "suspended": "suspended", "active": "un-suspended"}[target]
    if changed:
        click.echo(f"{verb} statement {record.jti} ({record.template}, digest "
                   f"{record.digest[:16]}...)")
    else:
        already = f" at {rfc3339(record.revoked_at)} ({record.revocation_reason})" \
            if target == "revoked" and record.revoked_at else ""
        click.echo(f"statement {record.jti} was already {target}{already}; nothing changed")
