"""``issuer tokens ...``: API tokens for the HTTP service."""

from __future__ import annotations

from typing import Any

import click

from issuer.core.authority import local_principal
from issuer.core.clock import parse_duration
from issuer.core.errors import UsageError
from issuer.core.tokens import ApiToken

from .common import authority, config_option, echo_json, echo_table, json_option, when


@click.group()
def tokens() -> None:
    """API tokens of the HTTP service: create, list, rotate, revoke (docs/operations.md)."""


@tokens.command("create")
@config_option
@click.argument("name")
@click.option("--role", type=click.Choice(["minter", "auditor", "admin"]), required=True,
              help="minter: mint its templates; auditor: read audit records; admin: all.")
@click.option("--template", "templates_", multiple=True, metavar="T",
              help="A template a minter token may mint (repeat for several).")
@click.option("--rate-limit", default=None, metavar="N/minute|unlimited",
              help="This token's own rate limit (default: service.rate_limit).")
@click.option("--expires", default=None, metavar="DURATION",
              help="Expire after DURATION (30d, 12h, 2w); default: never.")
@json_option
def tokens_create(name: str, role: str, templates_: tuple[str, ...], rate_limit: str | None,
                  expires: str | None, as_json: bool) -> None:
    """Create an API token; its secret is printed once and stored only as a hash."""
    auth = authority()
    for template in templates_:
        auth.templates.load(template)  # a typo must not create a token that can mint nothing
    token, secret = auth.tokens.create(name, role=role, templates=list(templates_),
                                       rate_limit=rate_limit, actor=local_principal(),
                                       channel="cli", now=auth.now(),
                                       expires_in=_expires(expires))
    if as_json:
        echo_secret(token, secret)
        return
    click.echo(secret)
    click.echo(f"created {token.role} token '{token.name}'"
               + (f" for {', '.join(token.templates)}" if token.templates else "")
               + (f", expiring {when(token.expires_at)}" if token.expires_at else "")
               + "; the secret above is shown only now", err=True)


def echo_secret(token: ApiToken, secret: str) -> None:
    """``{"name", "role", "templates", "token"}``, and ``expires_at`` when it expires."""
    shown: dict[str, Any] = {"name": token.name, "role": token.role,
                             "templates": list(token.templates), "token": secret}
    if token.expires_at is not None:
        shown["expires_at"] = token.expires_at
    echo_json(shown)


def _expires(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--expires: {exc}") from None


@tokens.command("rotate")
@config_option
@click.argument("name")
@click.option("--expires", default=None, metavar="DURATION",
              help="Expire after DURATION; default: the lifetime the token had, if any.")
@json_option
def tokens_rotate(name: str, expires: str | None, as_json: bool) -> None:
    """Give a token a new secret: same name, role and templates; the old secret stops working."""
    auth = authority()
    token, secret = auth.tokens.rotate(name, actor=local_principal(), channel="cli",
                                       now=auth.now(), expires_in=_expires(expires))
    if as_json:
        echo_secret(token, secret)
        return
    click.echo(secret)
    click.echo(f"rotated token '{token.name}'; the old secret no longer works, the new one "
               "above is shown only now", err=True)


@tokens.command("list")
@config_option
@json_option
def tokens_list(as_json: bool) -> None:
    """List API tokens (never their secrets)."""
    entries = authority().tokens.list()
    if as_json:
        echo_json([t.public() for t in entries])
        return
    echo_table([[t.name, t.role, ",".join(t.templates) or "-", t.rate_limit or "default",
                 when(t.created_at), when(t.expires_at), when(t.last_used_at),
                 when(t.revoked_at)] for t in entries],
               ["NAME", "ROLE", "TEMPLATES", "RATE_LIMIT", "CREATED", "EXPIRES", "LAST_USED",
                "REVOKED"])


@tokens.command("revoke")
@config_option
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke an API token at once."""
    auth = authority()
    auth.tokens.revoke(name, actor=local_principal(), channel="cli", now=auth.now())
    click.echo(f"revoked token '{name}'")
