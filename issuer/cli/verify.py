"""``issuer verify``: check a statement as an authorization server would."""

from __future__ import annotations

import sys

import click

from issuer.core.config import load_config
from issuer.core.errors import UsageError
from issuer.verifier.jwks import load_jwks
from issuer.verifier.trust import StatementVerifier, TrustedIssuer

from .common import authority, config_option, echo_json, json_option


@click.command("verify")
@config_option
@click.argument("token", default="-", required=False)
@click.option("--jwks", "jwks_source", metavar="FILE|URL", default=None,
              help="The issuer's JWKS (default: this issuer's own keys).")
@click.option("--issuer", "issuer_url", default=None,
              help="Expected iss (default: this issuer).")
@click.option("--audience", default=None, metavar="ID",
              help="This authorization server's identifier: needed for statements with aud.")
@click.option("--no-status-check", is_flag=True,
              help="Do not check the statement's Token Status List (revocation).")
@json_option
def verify_command(token: str, jwks_source: str | None, issuer_url: str | None,
                   audience: str | None, no_status_check: bool, as_json: bool) -> None:
    """Verify a statement (TOKEN or - for stdin) as an authorization server would.

    Checks the kind of token, the signature against the JWKS with an algorithm allow-list,
    iss, aud, exp, iat/nbf, the RFC 7591 metadata and the status; prints the claims, or exits 1
    with the reason.
    """
    if token == "-":
        token = sys.stdin.read()
    token = token.strip()
    if not token:
        raise UsageError("no statement given (pass TOKEN or pipe it to `issuer verify -`)")
    if jwks_source is None:  # this issuer's own keys: a revoked key is named as such
        verified = authority().verify(token, issuer=issuer_url, audience=audience,
                                      check_status=not no_status_check)
    else:
        if issuer_url is None:
            issuer_url = load_config(click.get_current_context().find_root().meta.get(
                "issuer.config")).issuer
        remote = jwks_source.startswith(("https://", "http://"))
        try:
            trusted = TrustedIssuer(issuer=issuer_url, check_status=not no_status_check,
                                    jwks_uri=jwks_source if remote else None,
                                    jwks=None if remote else load_jwks(jwks_source))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        verified = StatementVerifier(trusted=[trusted], audience=audience).verify(token)
    if as_json:
        echo_json({"valid": True, "header": verified.header, "claims": verified.claims,
                   "digest": verified.digest})
        return
    echo_json(verified.claims)
    click.echo(f"verified: iss {verified.issuer}, kid {verified.kid}, alg {verified.alg}, "
               f"digest {verified.digest}", err=True)
