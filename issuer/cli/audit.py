"""``issuer audit ...``: the audit records and the transparency log (docs/audit.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from issuer.core import checks
from issuer.core.clock import parse_time, rfc3339
from issuer.core.errors import NotFound, UsageError
from issuer.core.files import atomic_write
from issuer.core.templates import did_you_mean
from issuer.log.tlog import verify_inclusion_offline

from .common import (
    IDENTIFIER_ARGS,
    authority,
    config_option,
    echo_json,
    echo_report,
    echo_table,
    fail,
    json_option,
)


@click.group()
def audit() -> None:
    """Audit records: list, show and export what was issued (see docs/audit.md)."""


@audit.command("list")
@config_option
@click.option("--revoked", is_flag=True, help="Only revoked statements.")
@click.option("--template", default=None, help="Only statements of this template.")
@click.option("--software-id", default=None, help="Only statements with this software_id.")
@click.option("--kid", default=None, help="Only statements signed by this key.")
@click.option("--publisher", default=None, help="Only statements minted by this trusted publisher.")
@click.option("--repository", default=None,
              help="Only statements built from this source repository (owner/name).")
@click.option("--since", default=None, metavar="WHEN",
              help="Issued at or after WHEN: RFC 3339 date/time, or a duration ago like 7d.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most N records (the oldest N; with --newest-first the newest N).")
@click.option("--last", type=click.IntRange(min=1), default=None, metavar="N",
              help="The N most recent records, newest first (--limit N --newest-first).")
@click.option("--newest-first", is_flag=True, help="Newest first instead of oldest first.")
@json_option
def audit_list(revoked: bool, template: str | None, software_id: str | None, kid: str | None,
               publisher: str | None, repository: str | None, since: str | None,
               limit: int | None, last: int | None, newest_first: bool, as_json: bool) -> None:
    """List issued statements, oldest first (--newest-first, --last N: newest first).

    \b
    Example:
      issuer audit list --template mcp-connector --since 7d --last 20
    """
    auth = authority()
    try:
        since_t = parse_time(since, auth.now()) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    if last is not None and limit is not None:
        raise UsageError("--last N is --limit N --newest-first: give one of them")
    records = auth.audit.statements(template=template, software_id=software_id, kid=kid,
                                    since=since_t, limit=limit or last,
                                    revoked=True if revoked else None,
                                    publisher=publisher, repository=repository,
                                    newest_first=newest_first or last is not None)
    if not records and template is not None and template not in auth.templates.names():
        # No file and no record of that name: a typo, not an empty history.
        raise NotFound(f"no template named '{template}' in templates_dir or the audit records"
                       + did_you_mean(template, auth.templates.names()))
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
    """Show the full audit record of one statement, by jti or digest.

    \b
    Example:
      issuer audit show JTI --json
    """
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
@json_option
def audit_export(fmt: str, out: Path | None, as_json: bool) -> None:
    """Export every audit event in order (statements, templates, keys), one per line.

    The output is JSON lines either way; --json makes errors JSON too.

    \b
    Example:
      issuer audit export --out audit.jsonl
    """
    lines = [json.dumps(e.as_dict(), ensure_ascii=False) for e in authority().audit.events()]
    body = "".join(line + "\n" for line in lines)
    if out is not None:
        atomic_write(out, body.encode("utf-8"))
        click.echo(f"wrote {len(lines)} event(s) to {out}", err=True)
    else:
        click.echo(body, nl=False)



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
    """Check the database file, the transparency log and every table against the log.

    Recomputes the log from the stored entries and checks every signed checkpoint, the log's
    high-water mark, and each table a verifier or an auditor relies on (statements, template
    versions, API tokens, status lists) row by row against its logged entries. Exit 1, naming
    each problem, when anything was edited, inserted, deleted, reordered or truncated, or when
    the log no longer extends a checkpoint kept earlier.

    \b
    Example:
      issuer audit verify --checkpoint kept.txt --save-checkpoint kept.txt
    """
    auth = authority()
    notes = []
    for path in checkpoints:
        try:
            notes.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read checkpoint {path}: {exc}") from None
    report = checks.audit_verify(auth, notes)
    if report.ok and save_checkpoint is not None:
        atomic_write(save_checkpoint, auth.log.latest()[1].encode("utf-8"))
    if as_json:
        echo_json(report.as_json())
    else:
        echo_report(report)
        if report.ok and report.log is not None:
            click.echo(f"ok: {report.log.entries} entries recompute to the signed root "
                       f"{report.log.as_json()['root_hash']} (tree size "
                       f"{report.log.tree_size}); {report.log.checkpoints} checkpoints and every "
                       "table match the log")
            for size in report.log.consistent_with:
                click.echo(f"ok: the log extends the kept checkpoint of tree size {size}")
    if not report.ok:
        problems = report.problems()
        more = f" (and {len(problems) - 1} more problems above)" if len(problems) > 1 else ""
        fail(f"audit verify failed: {problems[0]}{more}")


@audit.command("proof", context_settings=IDENTIFIER_ARGS)
@config_option
@click.argument("ref", metavar="JTI|DIGEST")
@click.option("--tree-size", type=click.IntRange(min=1), default=None,
              help="Prove against the checkpoint of this size (default: the newest).")
@json_option
def audit_proof(ref: str, tree_size: int | None, as_json: bool) -> None:
    """An RFC 9162 inclusion proof that a statement's issuance is in the log.

    \b
    Example:
      issuer audit proof JTI --json
    """
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
