"""``issuer publishers ...``: the trusted publishers of issuer.toml, and which one a CI ID
token would match (docs/pipelines.md)."""

from __future__ import annotations

import sys

import click

from issuer.core.errors import IssuerError, UsageError
from issuer.core.publishers import choose, unverified_claims

from .common import authority, config_option, echo_json, echo_table, json_option


@click.group()
def publishers() -> None:
    """Trusted publishers: CI identities that may mint without a stored secret."""


@publishers.command("list")
@config_option
@json_option
def publishers_list(as_json: bool) -> None:
    """List the trusted publishers configured in issuer.toml."""
    configured = authority().publishers
    if as_json:
        echo_json([p.describe() for p in configured])
        return
    if not configured:
        click.echo("no trusted publishers ([[trusted_publishers]] in issuer.toml)", err=True)
        return
    echo_table([[p.name, p.kind.name, p.issuer, ",".join(p.templates),
                 " ".join(f"{k}={v}" for k, v in p.claims.items())] for p in configured],
               ["NAME", "KIND", "ISSUER", "TEMPLATES", "CLAIMS"])


@publishers.command("check")
@config_option
@click.argument("token", metavar="TOKEN|-")
@json_option
def publishers_check(token: str, as_json: bool) -> None:
    """Explain which publisher a CI ID token would match, and why the others don't.

    The token is verified as the exchange would (issuer keys, audience, times), but not
    recorded: checking a token does not use it up. Exit 1 when no publisher matches.
    """
    if token == "-":
        token = sys.stdin.read()
    token = token.strip()
    if not token:
        raise UsageError("TOKEN is empty")
    auth = authority()
    claims = unverified_claims(token)
    verified, error = False, None
    try:
        claims = auth.ci_tokens.verify(token).claims
        verified = True
    except IssuerError as exc:
        error = exc.description
    issuer = claims.get("iss")
    candidates = [p for p in auth.publishers if p.issuer == issuer]
    chosen, results = choose(candidates, claims)
    if as_json:
        echo_json({"verified": verified, "error": error,
                   "publisher": chosen.name if chosen and verified else None,
                   "publishers": [{"name": n, "matches": why is None, "reason": why}
                                  for n, why in results], "claims": claims})
    else:
        click.echo(f"token: {'verified' if verified else 'NOT verified: ' + str(error)}")
        if not candidates:
            click.echo(f"no trusted publisher has issuer {issuer!r}")
        for name, why in results:
            click.echo(f"  {name}: {'matches' if why is None else 'no: ' + why}")
        if chosen is not None:
            click.echo(f"would use: {chosen.name} (templates: {', '.join(chosen.templates)})"
                       + ("" if verified else ", once the token verifies"))
    if not (verified and chosen):
        sys.exit(1)
