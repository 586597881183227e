"""The ``issuer`` command line: a thin front over :class:`issuer.authority.Authority`.

Every command takes ``--config``; data commands take ``--json``. Errors are one line on stderr
(``issuer: error: ...``) with exit 1 when the thing checked failed or was not found and exit 2
for usage and configuration errors; never a traceback (``ISSUER_DEBUG=1`` shows one).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from . import metadata
from .authority import Authority, init_issuer, local_principal
from .clock import format_duration, parse_time, rfc3339
from .config import SIGNING_ALGS, load_config
from .errors import IssuerError, UsageError
from .files import atomic_write
from .jwks import load_jwks
from .verifier import StatementVerifier, TrustedIssuer
from .statements import MintRequest, parse_mint_request
from .tlog import verify_inclusion_offline, verify_log

F = TypeVar("F", bound=Callable[..., Any])
ALG_CHOICES = [*SIGNING_ALGS, "EdDSA"]


# --- plumbing: errors, config, output ---------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"issuer: error: {message}", err=True)
    sys.exit(code)


class IssuerGroup(click.Group):
    """Turns every error into one line on stderr and an exit code (SPEC "CLI")."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name or "issuer", complete_var,
                              standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "issuer"
            fail(f"{exc.format_message()} (see '{where} --help')", 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        except IssuerError as exc:
            fail(exc.description, exc.exit_code)
        except BrokenPipeError:
            sys.exit(1)
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("ISSUER_DEBUG"):
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (ISSUER_DEBUG=1 shows a "
                 "traceback)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().meta["issuer.config"] = value


def config_option(f: F) -> F:
    """``--config PATH`` on every command (SPEC lookup: --config, ISSUER_CONFIG, ./issuer.toml)."""
    return click.option("--config", type=click.Path(dir_okay=False), expose_value=False,
                        callback=_remember_config, is_eager=True,
                        help="issuer.toml to use (default: $ISSUER_CONFIG, then ./issuer.toml).")(f)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

#: For commands taking a kid, jti or digest: base64url identifiers may begin with '-' (even
#: '-h...'), which must reach the command as the identifier, not be parsed as an option; so
#: unknown options pass through as arguments and only the long --help asks for help.
IDENTIFIER_ARGS: dict[str, Any] = {"ignore_unknown_options": True,
                                   "help_option_names": ["--help"]}


def authority() -> Authority:
    """The authority of the configured issuer, built once per command and closed after it."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "issuer.authority" not in root.meta:
        built = Authority.from_config(root.meta.get("issuer.config"))
        root.meta["issuer.authority"] = built
        root.call_on_close(built.close)
    return root.meta["issuer.authority"]  # type: ignore[no-any-return]


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def when(t: int | None) -> str:
    return rfc3339(t) if t is not None else "-"


# --- the command tree ---------------------------------------------------------------------


@click.group(cls=IssuerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="software-statement-issuer", prog_name="issuer")
def cli() -> None:
    """Mint, publish and audit OAuth software statements (RFC 7591 section 2.3).

    Start with `issuer init`, then `issuer mint TEMPLATE`. See docs/cli.md.
    """


@cli.command()
@config_option
@click.option("--issuer", "issuer_url", default="http://127.0.0.1:8000", show_default=True,
              help="The iss claim: https, or http only on localhost.")
@click.option("--alg", type=click.Choice(ALG_CHOICES), default="ES256", show_default=True,
              help="Algorithm of the first signing key.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Issuer home to create.")
def init(issuer_url: str, alg: str, directory: Path) -> None:
    """Create an issuer: config, first active key, example templates, database.

    Refuses to overwrite an existing issuer.
    """
    auth = init_issuer(directory, issuer=issuer_url, alg=alg, actor=local_principal())
    try:
        key = auth.keystore.active()
        click.echo(f"initialised issuer {issuer_url} in {directory.resolve()}")
        click.echo(f"  config:    {auth.config.path}")
        click.echo(f"  key:       {key.kid} ({key.alg}, active) in {auth.config.keys_dir}")
        click.echo(f"  templates: {', '.join(auth.templates.names())}")
        click.echo(f"  database:  {auth.config.database}")
    finally:
        auth.close()


# --- keys -----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Signing keys: generate, list, rotate, revoke, history (see docs/keys.md)."""


@keys.command("generate")
@config_option
@click.option("--alg", type=click.Choice(ALG_CHOICES), default=None,
              help="Algorithm (default: default_alg of issuer.toml).")
@click.option("--activate", is_flag=True,
              help="Sign with the new key at once and retire the current one (an emergency: "
                   "verifiers may not have it yet).")
@click.option("--rsa-bits", type=click.IntRange(min=2048), default=None,
              help="RSA modulus size for RS256/PS256 (default 3072, at least 2048).")
@json_option
def keys_generate(alg: str | None, activate: bool, rsa_bits: int | None, as_json: bool) -> None:
    """Generate a key pair: active if there is none, otherwise `next` (published, not signing)."""
    key = authority().keys.generate(alg, activate=activate, actor=local_principal(),
                                    channel="cli", rsa_bits=rsa_bits)
    if as_json:
        echo_json({"kid": key.kid, "alg": key.alg, "state": key.state})
    else:
        click.echo(f"generated {key.alg} key {key.kid} ({key.state})")


@keys.command("list")
@config_option
@json_option
def keys_list(as_json: bool) -> None:
    """List keys with state, algorithm, times and how many statements each signed."""
    rows = authority().keys.history()
    if as_json:
        echo_json(rows)
        return
    echo_table([[r["kid"], r["state"], r["alg"], when(r["created_at"]), when(r["activated_at"]),
                 when(r["retired_at"] or r["revoked_at"] or r["expired_at"]),
                 when(r["published_until"]), str(r["statements"])] for r in rows],
               ["KID", "STATE", "ALG", "CREATED", "ACTIVATED", "RETIRED/REVOKED/EXPIRED",
                "PUBLISHED_UNTIL", "STATEMENTS"])


@keys.command("rotate")
@config_option
@click.option("--if-due", is_flag=True,
              help="Only when rotation_period has passed (for cron); also expires retired keys "
                   "whose last statement has expired.")
@click.option("--wait", is_flag=True,
              help="Wait until the next key has been published for jwks_max_age.")
@click.option("--force", is_flag=True,
              help="Activate the next key even if verifiers may not have it yet (emergency).")
@json_option
def keys_rotate(if_due: bool, wait: bool, force: bool, as_json: bool) -> None:
    """Make the pre-published next key active, retire the active one, publish a new next."""
    lifecycle = authority().keys
    if if_due:
        done = lifecycle.maintain(actor=local_principal(), channel="cli")
        if as_json:
            echo_json({"changes": done})
        else:
            click.echo("\n".join(done) if done else "nothing due")
        return
    active = lifecycle.rotate(actor=local_principal(), channel="cli", force=force, wait=wait)
    nxt = lifecycle.by_state("next")
    if as_json:
        echo_json({"active": active.kid, "next": nxt[0].kid if nxt else None})
    else:
        click.echo(f"rotated: {active.kid} is now active; next is {nxt[0].kid if nxt else '-'}")


@keys.command("revoke", context_settings=IDENTIFIER_ARGS)
@config_option
@click.argument("kid")
@click.option("--reason", type=click.Choice(["unspecified", "compromised", "superseded"]),
              required=True, help="Why: shown to verifiers in the historical keys document.")
@click.option("--force", is_flag=True, help="Allow revoking the active (signing) key.")
@json_option
def keys_revoke(kid: str, reason: str, force: bool, as_json: bool) -> None:
    """Withdraw a key from the JWKS at once and list the statements it signed."""
    auth = authority()
    key, count = auth.keys.revoke(kid, reason, actor=local_principal(), channel="cli",
                                  force=force)
    live = [r for r in auth.audit.statements(kid=kid) if r.exp > auth.now()]
    if as_json:
        echo_json({"kid": key.kid, "state": key.state, "reason": reason, "statements": count,
                   "unexpired": [{"jti": r.jti, "template": r.template,
                                  "software_id": r.software_id,
                                  "software_version": r.software_version, "exp": r.exp}
                                 for r in live]})
        return
    click.echo(f"revoked key {kid} ({reason}); it signed {count} statement(s), "
               f"{len(live)} still unexpired, which no verifier will accept now:")
    echo_table([[r.jti, r.template, r.software_id or "-", r.software_version or "-",
                 rfc3339(r.exp)] for r in live],
               ["JTI", "TEMPLATE", "SOFTWARE_ID", "VERSION", "EXP"])
    click.echo(f"re-mint them; `issuer audit list --kid {kid}` lists them again", err=True)


@keys.command("history")
@config_option
@json_option
def keys_history(as_json: bool) -> None:
    """Every key that ever existed, with its lifecycle times (what historical-keys publishes)."""
    rows = authority().keys.history()
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['kid']}  {r['alg']}  {r['state']}")
        for label in ("created_at", "published_at", "activated_at", "retired_at", "expired_at",
                      "revoked_at"):
            if r[label] is not None:
                click.echo(f"    {label[:-3]:10} {rfc3339(r[label])}")
        if r["revocation_reason"]:
            click.echo(f"    reason     {r['revocation_reason']}")
        click.echo(f"    statements {r['statements']}; verifiers need it until "
                   f"{rfc3339(r['verifier_exp'])}")


@cli.command("jwks")
@config_option
def jwks_command() -> None:
    """Print the public JWK Set verifiers use (RFC 7517 section 5); never a private member."""
    echo_json(authority().jwks())


# --- templates ------------------------------------------------------------------------------


@cli.group()
def templates() -> None:
    """Metadata templates: list, show, validate, history (see docs/templates.md)."""


@templates.command("list")
@config_option
@json_option
def templates_list(as_json: bool) -> None:
    """List the templates in templates_dir."""
    store = authority().templates
    rows: list[dict[str, Any]] = []
    for name in store.names():
        try:
            t = store.load(name)
            rows.append({"name": name, "lifetime": format_duration(t.lifetime),
                         "extends": t.chain[1] if len(t.chain) > 1 else None,
                         "description": t.description, "valid": True})
        except IssuerError:
            rows.append({"name": name, "lifetime": None, "extends": None,
                         "description": "(invalid: run `issuer templates validate`)",
                         "valid": False})
    if as_json:
        echo_json(rows)
        return
    echo_table([[r["name"], r["lifetime"] or "-", r["extends"] or "-", r["description"]]
                for r in rows], ["NAME", "LIFETIME", "EXTENDS", "DESCRIPTION"])


@templates.command("show")
@config_option
@click.argument("name")
@json_option
def templates_show(name: str, as_json: bool) -> None:
    """Print a template's resolved claims, after its extends chain."""
    t = authority().templates.load(name)
    doc = {"name": t.name, "extends": list(t.chain[1:]), "digest": t.digest, **t.content()}
    if as_json:
        echo_json(doc)
        return
    click.echo(f"template:    {t.name}" + (f" (extends {' -> '.join(t.chain[1:])})"
                                          if len(t.chain) > 1 else ""))
    click.echo(f"description: {t.description}")
    click.echo(f"lifetime:    {format_duration(t.lifetime)}")
    click.echo(f"overridable: {', '.join(sorted(t.overridable)) or '-'}")
    click.echo(f"required:    {', '.join(sorted(t.required)) or '-'}")
    click.echo(f"digest:      {t.digest}")
    click.echo("claims:")
    echo_json(t.claims)


@templates.command("validate")
@config_option
@click.argument("names", nargs=-1)
@click.option("--strict", is_flag=True, help="Treat warnings (risky choices) as errors.")
@json_option
def templates_validate(names: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check templates against the RFC 7591 rules (all of them when no NAME is given)."""
    store = authority().templates
    results: list[dict[str, Any]] = []
    for name in names or store.names():
        _, problems = store.check(name)
        errors = [p.line() for p in problems if p.level == "error" or strict]
        warnings = [p.line() for p in problems if p.level == "warning" and not strict]
        results.append({"template": name, "ok": not errors, "errors": errors,
                        "warnings": warnings})
    if as_json:
        echo_json(results)
    else:
        for r in results:
            click.echo(f"{'ok  ' if r['ok'] else 'FAIL'}  {r['template']}")
            for line in r["errors"]:
                click.echo(f"      error: {line}")
            for line in r["warnings"]:
                click.echo(f"      warning: {line}")
    failed = [r["template"] for r in results if not r["ok"]]
    if failed:
        fail(f"{len(failed)} of {len(results)} template(s) failed validation: "
             f"{', '.join(failed)}")


@templates.command("history")
@config_option
@click.argument("name")
@json_option
def templates_history(name: str, as_json: bool) -> None:
    """The recorded versions of a template: when it first minted and what changed since."""
    events = authority().audit.template_history(name)
    if as_json:
        echo_json([e.as_dict() for e in events])
        return
    if not events:
        click.echo(f"no recorded versions of template '{name}' (recorded at its first mint)")
    for e in events:
        digest = e.data.get("digest") or e.data.get("new_digest")
        click.echo(f"{rfc3339(e.time)}  {e.type}  {digest}  by {e.actor} ({e.channel})")
        for change in e.data.get("changes", []):
            detail = (f"added {change['added']} removed {change['removed']}"
                      if "added" in change else f"{change['old']!r} -> {change['new']!r}")
            click.echo(f"    {change['path']}: {detail}")


# --- minting --------------------------------------------------------------------------------


def parse_values(sets: Sequence[str], set_jsons: Sequence[str]) -> dict[str, Any]:
    """``--set claim=value`` (repeat it for an array claim) and ``--set-json claim=JSON``."""
    values: dict[str, Any] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects claim=value, got {item!r}")
        if metadata.is_array_claim(name):
            if name in values and not isinstance(values[name], list):
                raise UsageError(f"claim '{name}' given twice")
            values.setdefault(name, []).append(value)
        elif name in values:
            raise UsageError(f"claim '{name}' given twice (it is not an array claim; use "
                             "--set-json for a JSON value)")
        else:
            values[name] = value
    for item in set_jsons:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set-json expects claim=JSON, got {item!r}")
        if name in values:
            raise UsageError(f"claim '{name}' given twice")
        try:
            values[name] = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"--set-json {name}: not valid JSON ({exc})") from None
    return values


def read_batch(path: str) -> list[MintRequest]:
    """One ``{"template": ..., "claims": {...}}`` object per line; blank lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8") if path != "-" else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read batch file {path}: {exc}") from None
    requests = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from None
        requests.append(parse_mint_request(obj, where=f"{path}:{number}"))
    if not requests:
        raise UsageError(f"{path}: no mint requests in the batch file")
    return requests


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal, nothing otherwise."""
    if total < 2 or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label="minting", file=sys.stderr) as bar:
        yield bar.update


@cli.command()
@config_option
@click.argument("template", required=False)
@click.option("--set", "sets", multiple=True, metavar="CLAIM=VALUE",
              help="Set an overridable claim; repeat for an array claim like redirect_uris.")
@click.option("--set-json", "set_jsons", multiple=True, metavar="CLAIM=JSON",
              help="Set an overridable claim to a JSON value.")
@click.option("--batch", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Mint one statement per JSONL line {template, claims}, all or nothing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the output to FILE instead of stdout.")
@json_option
def mint(template: str | None, sets: tuple[str, ...], set_jsons: tuple[str, ...],
         batch: str | None, out: Path | None, as_json: bool) -> None:
    """Mint a signed software statement from TEMPLATE (or a --batch file).

    Prints the compact JWS, or with --json the object with software_statement, jti, digest,
    kid, iat, exp and template. Output appears only after the audit record is committed.
    """
    if batch is not None and (template or sets or set_jsons):
        raise UsageError("--batch takes its templates and claims from the file; don't give "
                         "TEMPLATE, --set or --set-json with it")
    if batch is None and not template:
        raise UsageError("missing TEMPLATE (or --batch FILE)")
    if batch is not None:
        requests = read_batch(batch)
    else:
        assert template is not None
        requests = [parse_mint_request({"template": template,
                                        "claims": parse_values(sets, set_jsons)})]
    with progress_bar(len(requests)) as progress:
        results = authority().mint_many(requests, principal=local_principal(), channel="cli",
                                        progress=progress)
    lines = [json.dumps(r.as_json()) if as_json else r.software_statement for r in results]
    if as_json and batch is None:
        lines = [json.dumps(results[0].as_json(), indent=2)]
    output = "\n".join(lines) + "\n"
    if out is not None:
        atomic_write(out, output.encode("utf-8"))
        click.echo(f"wrote {len(results)} statement(s) to {out}", err=True)
    else:
        click.echo(output, nl=False)


# --- verifying ------------------------------------------------------------------------------


@cli.command("verify")
@config_option
@click.argument("token", default="-", required=False)
@click.option("--jwks", "jwks_source", metavar="FILE|URL", default=None,
              help="The issuer's JWKS (default: this issuer's own keys).")
@click.option("--issuer", "issuer_url", default=None,
              help="Expected iss (default: this issuer).")
@click.option("--no-status-check", is_flag=True,
              help="Do not check the statement's Token Status List (revocation).")
@json_option
def verify_command(token: str, jwks_source: str | None, issuer_url: str | None,
                   no_status_check: bool, as_json: bool) -> None:
    """Verify a statement (TOKEN or - for stdin) as an authorization server would.

    Checks the signature against the JWKS with an algorithm allow-list, iss, exp, iat/nbf
    and the RFC 7591 metadata; prints the claims, or exits 1 with the reason.
    """
    if token == "-":
        token = sys.stdin.read()
    token = token.strip()
    if not token:
        raise UsageError("no statement given (pass TOKEN or pipe it to `issuer verify -`)")
    if jwks_source is None:  # this issuer's own keys: a revoked key is named as such
        verified = authority().verify(token, issuer=issuer_url,
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
        verified = StatementVerifier(trusted=[trusted]).verify(token)
    if as_json:
        echo_json({"valid": True, "header": verified.header, "claims": verified.claims,
                   "digest": verified.digest})
        return
    echo_json(verified.claims)
    click.echo(f"verified: iss {verified.issuer}, kid {verified.kid}, alg {verified.alg}, "
               f"digest {verified.digest}", err=True)


# --- revocation -----------------------------------------------------------------------------


@cli.command(context_settings=IDENTIFIER_ARGS)
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


# --- audit ----------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Audit records: list, show and export what was issued (see docs/audit.md)."""


@audit.command("list")
@config_option
@click.option("--revoked", is_flag=True, help="Only revoked statements.")
@click.option("--template", default=None, help="Only statements of this template.")
@click.option("--software-id", default=None, help="Only statements with this software_id.")
@click.option("--kid", default=None, help="Only statements signed by this key.")
@click.option("--since", default=None, metavar="WHEN",
              help="Issued at or after WHEN: RFC 3339 date/time, or a duration ago like 7d.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N records.")
@json_option
def audit_list(revoked: bool, template: str | None, software_id: str | None, kid: str | None,
               since: str | None, limit: int | None, as_json: bool) -> None:
    """List issued statements, oldest first."""
    auth = authority()
    try:
        since_t = parse_time(since, auth.now()) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    records = auth.audit.statements(template=template, software_id=software_id, kid=kid,
                                    since=since_t, limit=limit, revoked=True if revoked else None)
    if as_json:
        echo_json([asdict(r) for r in records])
        return
    echo_table([[r.jti, rfc3339(r.iat), r.template, r.software_id or "-",
                 r.software_version or "-", r.kid[:12], f"{r.principal} ({r.channel})",
                 f"revoked {rfc3339(r.revoked_at)}: {r.revocation_reason}" if r.revoked_at
                 else "issued"] for r in records],
               ["JTI", "ISSUED", "TEMPLATE", "SOFTWARE_ID", "VERSION", "KID", "PRINCIPAL",
                "STATUS"])


@audit.command("show", context_settings=IDENTIFIER_ARGS)
@config_option
@click.argument("ref", metavar="JTI|DIGEST")
@json_option
def audit_show(ref: str, as_json: bool) -> None:
    """Show the full audit record of one statement, by jti or digest."""
    record = asdict(authority().audit.statement(ref))
    if as_json:
        echo_json(record)
        return
    for key, value in record.items():
        if key in ("iat", "exp", "revoked_at") and value is not None:
            value = f"{value} ({rfc3339(value)})"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key + ':':20} {value}")


@audit.command("export")
@config_option
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Output format: one JSON event per line.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of stdout.")
def audit_export(fmt: str, out: Path | None) -> None:
    """Export every audit event in order (statements, templates, keys), one per line."""
    lines = [json.dumps(e.as_dict(), ensure_ascii=False) for e in authority().audit.events()]
    body = "".join(line + "\n" for line in lines)
    if out is not None:
        atomic_write(out, body.encode("utf-8"))
        click.echo(f"wrote {len(lines)} event(s) to {out}", err=True)
    else:
        click.echo(body, nl=False)


# --- API tokens and the service --------------------------------------------------------------


@cli.group()
def tokens() -> None:
    """API tokens of the HTTP service: create, list, revoke (see docs/operations.md)."""


@tokens.command("create")
@config_option
@click.argument("name")
@click.option("--role", type=click.Choice(["minter", "auditor", "admin"]), required=True,
              help="minter: mint its templates; auditor: read audit records; admin: all.")
@click.option("--template", "templates_", multiple=True, metavar="T",
              help="A template a minter token may mint (repeat for several).")
@click.option("--rate-limit", default=None, metavar="N/minute|unlimited",
              help="This token's own rate limit (default: service.rate_limit).")
@json_option
def tokens_create(name: str, role: str, templates_: tuple[str, ...], rate_limit: str | None,
                  as_json: bool) -> None:
    """Create an API token; its secret is printed once and stored only as a hash."""
    auth = authority()
    for template in templates_:
        auth.templates.load(template)  # a typo must not create a token that can mint nothing
    token, secret = auth.tokens.create(name, role=role, templates=list(templates_),
                                       rate_limit=rate_limit, actor=local_principal(),
                                       channel="cli", now=auth.now())
    if as_json:
        echo_json({"name": token.name, "role": token.role, "templates": list(token.templates),
                   "token": secret})
        return
    click.echo(secret)
    click.echo(f"created {token.role} token '{token.name}'"
               + (f" for {', '.join(token.templates)}" if token.templates else "")
               + "; the secret above is shown only now", err=True)


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
                 when(t.created_at), when(t.revoked_at)] for t in entries],
               ["NAME", "ROLE", "TEMPLATES", "RATE_LIMIT", "CREATED", "REVOKED"])


@tokens.command("revoke")
@config_option
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke an API token at once."""
    auth = authority()
    auth.tokens.revoke(name, actor=local_principal(), channel="cli", now=auth.now())
    click.echo(f"revoked token '{name}'")


@cli.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default: service.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: service.port).")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="Log one line per request (method, path, status; never headers).")
def serve(host: str | None, port: int | None, access_log: bool) -> None:
    """Serve the issuer over HTTP: JWKS, metadata, mint and audit APIs (docs/http-api.md)."""
    from .service import serve as run

    auth = authority()
    auth.keystore.signer()  # fail now, not at the first request, if the key can't be loaded
    run(auth, host or auth.config.service.host, port or auth.config.service.port,
        access_log=access_log)


@audit.command("verify")
@config_option
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A signed checkpoint saved earlier: the log must still extend it (repeatable).")
@click.option("--save-checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="After verifying, write the newest signed checkpoint to FILE, to keep.")
@json_option
def audit_verify(checkpoints: tuple[Path, ...], save_checkpoint: Path | None,
                 as_json: bool) -> None:
    """Recompute the transparency log from the stored entries and check every checkpoint.

    Exit 1, naming the first bad index, when an entry was edited, reordered, inserted or
    deleted, or when the log no longer extends a checkpoint kept earlier.
    """
    auth = authority()
    notes = []
    for path in checkpoints:
        try:
            notes.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read checkpoint {path}: {exc}") from None
    report = verify_log(auth.log, notes)
    report.statements = auth.audit.check_statement_rows()
    if save_checkpoint is not None:
        atomic_write(save_checkpoint, auth.log.latest()[1].encode("utf-8"))
    if as_json:
        echo_json({"ok": True, **report.as_json()})
        return
    click.echo(f"ok: {report.entries} entries recompute to the signed root "
               f"{report.as_json()['root_hash']} (tree size {report.tree_size}); "
               f"{report.checkpoints} checkpoints and {report.statements} statement records match")
    for size in report.consistent_with:
        click.echo(f"ok: the log extends the kept checkpoint of tree size {size}")


@audit.command("proof", context_settings=IDENTIFIER_ARGS)
@config_option
@click.argument("ref", metavar="JTI|DIGEST")
@click.option("--tree-size", type=click.IntRange(min=1), default=None,
              help="Prove against the checkpoint of this size (default: the newest).")
@json_option
def audit_proof(ref: str, tree_size: int | None, as_json: bool) -> None:
    """An RFC 9162 inclusion proof that a statement's issuance is in the log."""
    auth = authority()
    record = auth.audit.statement(ref)
    proof = auth.log.inclusion(record.log_index, auth.audit.entry(record.log_index), tree_size)
    verify_inclusion_offline(proof.checkpoint, auth.log.verifier.verifier_key(), proof.entry,
                             proof.log_index, list(proof.hashes))  # never hand out a bad proof
    if as_json:
        echo_json({**proof.as_json(), "jti": record.jti, "digest": record.digest,
                   "log_key": auth.log.verifier.verifier_key()})
        return
    click.echo(f"statement {record.jti} is entry {proof.log_index} of the log of size "
               f"{proof.tree_size}")
    click.echo(f"leaf hash:  {proof.as_json()['leaf_hash']}")
    click.echo("proof:      " + (" ".join(proof.as_json()["inclusion_proof"]) or "(empty)"))
    click.echo(f"log key:    {auth.log.verifier.verifier_key()}")
    click.echo("checkpoint:")
    click.echo(proof.checkpoint, nl=False)


def main() -> None:
    """Console script entry point."""
    cli.main(prog_name="issuer")


if __name__ == "__main__":  # pragma: no cover
    main()
