"""``issuer keys ...`` and ``issuer jwks``: the keystore and its lifecycle (docs/keys.md)."""

from __future__ import annotations

from pathlib import Path

import click

from issuer.core.authority import local_principal
from issuer.core.clock import rfc3339
from issuer.core.errors import UsageError

from .common import (
    ALG_CHOICES,
    IDENTIFIER_ARGS,
    INTERRUPTED,
    authority,
    config_option,
    echo_json,
    echo_table,
    json_option,
    on_interrupt,
    terminal_prompt,
    when,
)


@click.group()
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
    """Generate a key pair: active if there is none, otherwise `next` (published, not signing).

    \b
    Example:
      issuer keys generate --alg ES256
    """
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
    """List keys with state, algorithm, times and how many statements each signed.

    \b
    Example:
      issuer keys list --json
    """
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
    """Make the pre-published next key active, retire the active one, publish a new next.

    \b
    Example:
      issuer keys rotate --if-due      # from cron
    """
    lifecycle = authority().keys
    if if_due:
        done = lifecycle.maintain(actor=local_principal(), channel="cli")
        if as_json:
            echo_json({"changes": done})
        else:
            click.echo("\n".join(done) if done else "nothing due")
        return
    pending = lifecycle.by_state("next")
    if wait and not force and pending and lifecycle.now() < lifecycle.eligible_at(pending[0]):
        on_interrupt("interrupted (Ctrl-C) while waiting; no key was rotated")
        click.echo(f"waiting until {rfc3339(lifecycle.eligible_at(pending[0]))}, when the next "
                   f"key {pending[0].kid} has been published for jwks_max_age", err=True)
    active = lifecycle.rotate(actor=local_principal(), channel="cli", force=force, wait=wait)
    on_interrupt(INTERRUPTED)  # rotated: the wait's message is no longer the truth
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
    """Withdraw a key from the JWKS at once and list the statements it signed.

    \b
    Example:
      issuer keys revoke KID --reason compromised --force
    """
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
    if not live:
        click.echo(f"revoked key {kid} ({reason}); it signed {count} statement(s), none of "
                   "them unexpired: nothing to re-mint")
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
    """Every key that ever existed, with its lifecycle times (what historical-keys publishes).

    \b
    Example:
      issuer keys history --json
    """
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


@keys.command("passphrase")
@config_option
@click.option("--new-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Read the new passphrase from FILE (default: ask twice on the "
                                 "terminal).")
@click.option("--remove", is_flag=True, help="Store the keys unencrypted instead.")
@json_option
def keys_passphrase(new_passphrase_file: Path | None, remove: bool, as_json: bool) -> None:
    """Re-encrypt every key file under a new passphrase, all at once or not at all.

    The current passphrase comes from ISSUER_KEY_PASSPHRASE, ISSUER_KEY_PASSPHRASE_FILE or the
    terminal; afterwards, give the new one the same way.

    \b
    Example:
      issuer keys passphrase --new-passphrase-file /run/credentials/issuer/new-passphrase
    """
    auth = authority()
    new = None if remove else _new_passphrase(new_passphrase_file)
    files = auth.change_key_passphrase(new, actor=local_principal(), channel="cli")
    if as_json:
        echo_json({"files": files, "encrypted": new is not None})
        return
    state = "encrypted under the new passphrase" if new else "stored unencrypted"
    click.echo(f"{len(files)} key file(s) {state}; set ISSUER_KEY_PASSPHRASE_FILE (or "
               "ISSUER_KEY_PASSPHRASE) accordingly before the next command")


def _new_passphrase(path: Path | None) -> str:
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        if not text:
            raise UsageError(f"{path} is empty")
        return text
    prompt = terminal_prompt()
    if prompt is None:
        raise UsageError("no terminal to ask the new passphrase on: use --new-passphrase-file")
    first, second = prompt("New passphrase: "), prompt("Repeat the new passphrase: ")
    if not first or first != second:
        raise UsageError("the two passphrases typed differ (or are empty); nothing changed")
    return first


@click.command("jwks")
@config_option
@json_option
def jwks_command(as_json: bool) -> None:
    """Print the public JWK Set verifiers use (RFC 7517 section 5); never a private member.

    The output is JSON with or without --json (which makes errors JSON too).

    \b
    Example:
      issuer jwks > jwks.json
    """
    echo_json(authority().jwks())
