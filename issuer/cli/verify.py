"""``issuer verify``: check a statement, or a client id URL, as an authorization server would."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from issuer.core.errors import InvalidClientId, InvalidSoftwareStatement, IssuerError, UsageError
from issuer.verifier.cimd import ClientIdResolver
from issuer.verifier.jwks import load_jwks
from issuer.verifier.trust import StatementVerifier, TrustedIssuer

from .common import authority, config_option, echo_json, json_option


def statement_verifier(jwks_source: str | None, issuer_url: str | None,
                       check_status: bool, audience: str | None = None) -> StatementVerifier:
    """A verifier trusting one issuer: this one with its own keys and status lists, or
    ``issuer_url`` with the JWKS of ``jwks_source`` (a file or URL; no configuration needed
    when both are given)."""
    if jwks_source is None:
        local = authority()
        return StatementVerifier(trusted=[TrustedIssuer(issuer=issuer_url or local.config.issuer,
                                                        jwks=local.jwks(),
                                                        check_status=check_status)],
                                 clock=local.clock, status=local.status_client(),
                                 audience=audience)
    issuer_url = issuer_url or authority().config.issuer
    remote = jwks_source.startswith(("https://", "http://"))
    try:
        trusted = TrustedIssuer(issuer=issuer_url, check_status=check_status,
                                jwks_uri=jwks_source if remote else None,
                                jwks=None if remote else load_jwks(jwks_source))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return StatementVerifier(trusted=[trusted], audience=audience)


@click.command("verify")
@config_option
@click.argument("token", default=None, required=False, metavar="[TOKEN|FILE|-]")
@click.option("--jwks", "jwks_source", metavar="FILE|URL", default=None,
              help="The issuer's JWKS (default: this issuer's own keys).")
@click.option("--issuer", "issuer_url", default=None,
              help="Expected iss (default: this issuer).")
@click.option("--audience", default=None, metavar="ID",
              help="This authorization server's identifier: needed for statements with aud.")
@click.option("--no-status-check", is_flag=True,
              help="Do not check the statement's Token Status List (revocation).")
@click.option("--client-id", "client_id", metavar="URL", default=None,
              help="Resolve a Client ID Metadata Document URL and verify its statement.")
@click.option("--reject-disagreement", is_flag=True,
              help="With --client-id: fail when the document and its statement differ "
                   "(default: report it, the statement's values win).")
@click.option("--unsafe-allow-loopback", is_flag=True,
              help="With --client-id, for development: fetch from loopback, http included.")
@json_option
def verify_command(token: str | None, jwks_source: str | None, issuer_url: str | None,
                   audience: str | None, no_status_check: bool, client_id: str | None,
                   reject_disagreement: bool, unsafe_allow_loopback: bool,
                   as_json: bool) -> None:
    """Verify a statement (TOKEN, a FILE holding it, or - for stdin), or with --client-id URL
    a client's metadata document and the statement it carries, as an authorization server
    would.

    Checks the kind of token, the signature against the JWKS with an algorithm allow-list,
    iss, aud, exp, iat/nbf, the RFC 7591 metadata and the status; prints the claims, or exits
    1 with the reason (with --json: {"valid": false, "error", "error_description"} on
    stdout).

    \b
    Example:
      issuer verify statement.jwt --jwks https://issuer.example.com/.well-known/jwks.json \\
          --issuer https://issuer.example.com
    """
    try:
        if client_id is not None:
            if token is not None:
                raise UsageError("give either TOKEN or --client-id, not both")
            _verify_client_id(client_id, statement_verifier(jwks_source, issuer_url,
                                                            not no_status_check, audience),
                              reject_disagreement, unsafe_allow_loopback, as_json)
            return
        if reject_disagreement or unsafe_allow_loopback:
            raise UsageError("--reject-disagreement and --unsafe-allow-loopback go with "
                             "--client-id")
        _verify_statement(read_token(token), jwks_source, issuer_url, audience,
                          not no_status_check, as_json)
    except IssuerError as exc:
        if as_json and isinstance(exc, REFUSALS):  # a refusal is an answer: say it as data
            echo_json({"valid": False, **exc.as_json()})
        raise


#: Errors that mean "this does not verify", as opposed to a usage or configuration problem.
REFUSALS = (InvalidSoftwareStatement, InvalidClientId)


def read_token(arg: str | None) -> str:
    """The statement itself, or read from ``-`` or nothing (stdin) or from a file."""
    if arg is None or arg == "-":
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


def _verify_statement(token: str, jwks_source: str | None, issuer_url: str | None,
                      audience: str | None, check_status: bool, as_json: bool) -> None:
    if jwks_source is None:  # this issuer's own keys: a revoked key is named as such
        verified = authority().verify(token, issuer=issuer_url, audience=audience,
                                      check_status=check_status)
    else:
        verified = statement_verifier(jwks_source, issuer_url, check_status,
                                      audience).verify(token)
    if as_json:
        echo_json({"valid": True, "header": verified.header, "claims": verified.claims,
                   "digest": verified.digest})
        return
    echo_json(verified.claims)
    click.echo(f"verified: iss {verified.issuer}, kid {verified.kid}, alg {verified.alg}, "
               f"digest {verified.digest}", err=True)


def _verify_client_id(client_id: str, verifier: StatementVerifier, reject: bool,
                      allow_loopback: bool, as_json: bool) -> None:
    resolver = ClientIdResolver(verifier, on_disagreement="reject" if reject else "statement",
                                unsafe_allow_loopback=allow_loopback, clock=verifier.clock)
    client = resolver.resolve(client_id)
    if as_json:
        echo_json({"valid": True, **client.as_json()})
        return
    echo_json(client.metadata)
    for disagreement in client.disagreements:
        click.echo(f"disagreement: {disagreement.describe()} (the statement's value is used)",
                   err=True)
    statement = client.statement
    assert statement is not None
    click.echo(f"verified: client_id {client.client_id}, statement of {statement.issuer}, kid "
               f"{statement.kid}, digest {statement.digest}", err=True)
