"""``issuer verify``: check a statement as an authorization server would."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from issuer.core.config import load_config
from issuer.core.errors import InvalidSoftwareStatement, UsageError
from issuer.verifier.jwks import load_jwks
from issuer.verifier.statement import VerifiedStatement
from issuer.verifier.trust import StatementVerifier, TrustedIssuer

from .common import authority, config_option, echo_json, json_option


@click.command("verify")
@config_option
@click.argument("token", default="-", required=False, metavar="[TOKEN|FILE|-]")
@click.option("--jwks", "jwks_source", metavar="FILE|URL", default=None,
              help="The issuer's JWKS (default: this issuer's own keys).")
@click.option("--issuer", "issuer_url", default=None,
              help="Expected iss (default: this issuer).")
@click.option("--no-status-check", is_flag=True,
              help="Do not check the statement's Token Status List (revocation).")
@json_option
def verify_command(token: str, jwks_source: str | None, issuer_url: str | None,
                   no_status_check: bool, as_json: bool) -> None:
    """Verify a statement (TOKEN, a FILE holding it, or - for stdin) as an authorization
    server would.

    Checks the signature against the JWKS with an algorithm allow-list, iss, exp, iat/nbf
    and the RFC 7591 metadata; prints the claims, or exits 1 with the reason (with --json:
    {"valid": false, "error", "error_description"} on stdout).

    \b
    Example:
      issuer verify statement.jwt --jwks https://issuer.example.com/.well-known/jwks.json \\
          --issuer https://issuer.example.com
    """
    token = read_token(token)
    try:
        verified = _verify(token, jwks_source, issuer_url, not no_status_check)
    except InvalidSoftwareStatement as exc:
        if as_json:
            echo_json({"valid": False, **exc.as_json()})
        raise
    if as_json:
        echo_json({"valid": True, "header": verified.header, "claims": verified.claims,
                   "digest": verified.digest})
        return
    echo_json(verified.claims)
    click.echo(f"verified: iss {verified.issuer}, kid {verified.kid}, alg {verified.alg}, "
               f"digest {verified.digest}", err=True)


def read_token(arg: str) -> str:
    """The statement itself, or read from ``-`` (stdin) or from a file of that name."""
    if arg == "-":
        text = sys.stdin.read()
    elif arg.strip() and (arg.count(".") != 2 or "/" in arg):  # a JWS: two dots, no "/"
        try:
            text = Path(arg).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {arg}: {getattr(exc, 'strerror', None) or exc}"
                             " (give the statement itself, a file holding it, or -)") from None
    else:
        text = arg
    text = text.strip()
    if not text:
        raise UsageError("no statement given (pass TOKEN, a FILE, or pipe it to "
                         "`issuer verify -`)")
    return text


def _verify(token: str, jwks_source: str | None, issuer_url: str | None,
            check_status: bool) -> VerifiedStatement:
    if jwks_source is None:  # this issuer's own keys: a revoked key is named as such
        return authority().verify(token, issuer=issuer_url, check_status=check_status)
    if issuer_url is None:
        issuer_url = load_config(click.get_current_context().find_root().meta.get(
            "issuer.config")).issuer
    remote = jwks_source.startswith(("https://", "http://"))
    try:
        trusted = TrustedIssuer(issuer=issuer_url, check_status=check_status,
                                jwks_uri=jwks_source if remote else None,
                                jwks=None if remote else load_jwks(jwks_source))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return StatementVerifier(trusted=[trusted]).verify(token)
