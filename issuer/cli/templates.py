"""``issuer templates ...``: list, show, validate and the recorded history of templates."""

from __future__ import annotations

from typing import Any

import click

from issuer.core.clock import format_duration, rfc3339
from issuer.core.errors import IssuerError

from .common import authority, config_option, echo_json, echo_table, fail, json_option


@click.group()
def templates() -> None:
    """Metadata templates: list, show, validate, history (see docs/templates.md)."""


@templates.command("list")
@config_option
@json_option
def templates_list(as_json: bool) -> None:
    """List the templates in templates_dir.

    \b
    Example:
      issuer templates list
    """
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
    """Print a template's resolved claims, after its extends chain.

    \b
    Example:
      issuer templates show mcp-connector --json
    """
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
    """Check templates against the RFC 7591 rules (all of them when no NAME is given).

    \b
    Example:
      issuer templates validate --strict
    """
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
             f"{', '.join(failed)}", error="invalid_template")


@templates.command("history")
@config_option
@click.argument("name")
@json_option
def templates_history(name: str, as_json: bool) -> None:
    """The recorded versions of a template: when it first minted and what changed since.

    \b
    Example:
      issuer templates history mcp-connector
    """
    events = authority().audit.template_history(name)
    if as_json:
        echo_json([e.as_dict() for e in events])
        return
    if not events:
        click.echo(f"no recorded versions of template '{name}' (recorded at its first mint)")
    for e in events:
        digest = e.data.get("digest") or e.data.get("new_digest")
        click.echo(f"{rfc3339(e.time)}  {e.type}  {digest}  by {e.actor} ({e.channel})")
        for edit in e.data.get("edited", []):
            click.echo(f"    {edit['file']} edited by {edit['owner']} at {edit['mtime']}")
        for change in e.data.get("changes", []):
            detail = (f"added {change['added']} removed {change['removed']}"
                      if "added" in change else f"{change['old']!r} -> {change['new']!r}")
            click.echo(f"    {change['path']}: {detail}")
