"""``issuer verify``: check a statement, or a client id URL, as an authorization server would."""

from __future__ import annotations

import sys

import click

from issuer.core.errors import UsageError
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
@click.argument("token", default=None, required=False)
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
    """Verify a statement (TOKEN or - for stdin), or with --client-id URL a client's metadata
    document and the statement it carries, as an authorization server would.

    Checks the kind of token, the signature against the JWKS with an algorithm allow-list,
    iss, aud, exp, iat/nbf, the RFC 7591 metadata and the status; prints the claims, or exits 1
    with the reason.
    """
    if client_id is not None:
        if token is not None:
            raise UsageError("give either TOKEN or --client-id, not both")
        _verify_client_id(client_id, statement_verifier(jwks_source, issuer_url,
                                                        not no_status_check, audience),
                          reject_disagreement, unsafe_allow_loopback, as_json)
        return
    if reject_disagreement or unsafe_allow_loopback:
        raise UsageError("--reject-disagreement and --unsafe-allow-loopback go with --client-id")
    if token is None or token == "-":
        token = sys.stdin.read()
    token = token.strip()
    if not token:
        raise UsageError("no statement given (pass TOKEN or pipe it to `issuer verify -`)")
    if jwks_source is None:  # this issuer's own keys: a revoked key is named as such
        verified = authority().verify(token, issuer=issuer_url, audience=audience,
                                      check_status=not no_status_check)
    else:
        verified = statement_verifier(jwks_source, issuer_url, not no_status_check,
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
