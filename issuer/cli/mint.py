"""``issuer mint``: one statement, or a batch, from the local keystore; or one through a
served issuer (``--remote``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from issuer.core import metadata
from issuer.core.authority import local_principal
from issuer.core.errors import UsageError
from issuer.core.files import atomic_writer
from issuer.core.signing import default_workers
from issuer.core.statements import MintRequest, MintResult, parse_mint_request

from .common import authority, claim_options, config_option, json_option, warn
from .remote import RemoteIssuer, ambient_id_token, default_idempotency_key, read_token_file


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


def read_batch(path: str) -> tuple[list[MintRequest], list[str]]:
    """One ``{"template": ..., "claims": {...}}`` object per line; blank lines are skipped.

    Returns the requests and, for each, the ``file:line: `` that names it in an error."""
    try:
        text = Path(path).read_text(encoding="utf-8") if path != "-" else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read batch file {path}: {exc}") from None
    requests, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from None
        requests.append(parse_mint_request(obj, where=f"{path}:{number}"))
        labels.append(f"{path}:{number}: ")
    if not requests:
        raise UsageError(f"{path}: no mint requests in the batch file")
    return requests, labels


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal, nothing otherwise."""
    if total < 2 or not sys.stderr.isatty():
        yield None
        return
    # No ETA: click's estimate counts the checks before the first signature as signing time.
    with click.progressbar(length=total, label="signing", file=sys.stderr, show_eta=False,
                           show_pos=True) as bar:
        yield bar.update


@click.command()
@config_option
@click.argument("template", required=False)
@claim_options
@click.option("--batch", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Mint one statement per JSONL line {template, claims}, all or nothing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the output to FILE instead of stdout.")
@click.option("--remote", default=None, metavar="URL",
              help="Mint through the issuer served at URL instead of the local keystore.")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="With --remote: a file holding the API token.")
@click.option("--oidc", is_flag=True,
              help="With --remote: exchange the CI's OIDC ID token (GitHub Actions, GitLab CI).")
@click.option("--audience", default=None,
              help="With --oidc: the audience to ask the CI for (default: the issuer's).")
@click.option("--idempotency-key", default=None, metavar="KEY",
              help="With --remote: retries with KEY get the same statement (default: derived "
                   "from the CI run and the request).")
@json_option
def mint(template: str | None, sets: tuple[str, ...], set_jsons: tuple[str, ...],
         batch: str | None, out: Path | None, remote: str | None, token_file: str | None,
         oidc: bool, audience: str | None, idempotency_key: str | None, as_json: bool) -> None:
    """Mint a signed software statement from TEMPLATE (or a --batch file).

    Prints the compact JWS, or with --json the object with software_statement, jti, digest,
    kid, iat, exp and template. Output appears only after the audit record is committed.
    With --remote URL the served issuer mints it (same output), authenticated by
    --token-file or, with no stored secret, by --oidc.

    \b
    Example:
      issuer mint mcp-connector --set software_version=1.4.2 --json
    """
    if remote is None and (token_file or oidc or audience or idempotency_key):
        raise UsageError("--token-file, --oidc, --audience and --idempotency-key go with "
                         "--remote URL")
    if remote is not None:
        if batch is not None or not template:
            raise UsageError("--remote mints one TEMPLATE (no --batch)")
        if (token_file is None) == (not oidc):
            raise UsageError("--remote needs exactly one of --token-file FILE and --oidc")
        if audience and not oidc:
            raise UsageError("--audience goes with --oidc")
        request = parse_mint_request({"template": template,
                                      "claims": parse_values(sets, set_jsons)})
        result = _mint_remote(request, remote, token_file, audience, idempotency_key)
        _emit([result], as_json, single=True, out=out)
        return
    if batch is not None and (template or sets or set_jsons):
        raise UsageError("--batch takes its templates and claims from the file; don't give "
                         "TEMPLATE, --set or --set-json with it")
    if batch is None and not template:
        raise UsageError("missing TEMPLATE (or --batch FILE)")
    labels = None
    if batch is not None:
        requests, labels = read_batch(batch)
    else:
        assert template is not None
        requests = [parse_mint_request({"template": template,
                                        "claims": parse_values(sets, set_jsons)})]
    with contextlib.ExitStack() as after_commit:
        pressed: list[bool] = []

        def committing(count: int) -> None:
            # From here the batch commits: Ctrl-C must not lose the output of what is recorded.
            after_commit.enter_context(interrupt_deferred(pressed))
            if progress is not None:
                click.echo(f"\nrecording {count} statements in one transaction...", err=True)

        with progress_bar(len(requests)) as progress:
            results = authority().mint_many(requests, principal=local_principal(),
                                            channel="cli", progress=progress, labels=labels,
                                            committing=committing, workers=default_workers())
        _emit(results, as_json, single=batch is None, out=out)
    if pressed:
        warn(f"Ctrl-C came after the {len(results)} statement(s) were recorded: the output "
             "above is complete; don't mint them again")


@contextlib.contextmanager
def interrupt_deferred(pressed: list[bool]) -> Iterator[None]:
    """Ctrl-C is noted in ``pressed`` instead of stopping the command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _emit(results: Sequence[MintResult | dict[str, Any]], as_json: bool, *, single: bool,
          out: Path | None) -> None:
    """The same output for a local and a remote mint (a result or its JSON object), written a
    chunk of lines at a time: a batch of 100,000 is never held twice over."""
    if out is not None:
        with atomic_writer(out) as file:
            for text in _output(results, as_json, single):
                file.write(text.encode("utf-8"))
        click.echo(f"wrote {len(results)} statement(s) to {out}", err=True)
    else:
        for text in _output(results, as_json, single):
            click.echo(text, nl=False)


def _output(results: Sequence[MintResult | dict[str, Any]], as_json: bool, single: bool,
            chunk: int = 1000) -> Iterator[str]:
    objects = (r.as_json() if isinstance(r, MintResult) else r for r in results)
    if as_json and single:
        yield json.dumps(next(objects), indent=2) + "\n"
        return
    lines: list[str] = []
    for obj in objects:
        lines.append((json.dumps(obj) if as_json else obj["software_statement"]) + "\n")
        if len(lines) == chunk:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def _mint_remote(request: MintRequest, url: str, token_file: str | None,
                 audience: str | None, key: str | None) -> dict[str, Any]:
    issuer = RemoteIssuer(url)
    if token_file is not None:
        bearer = read_token_file(token_file)
    else:
        id_token = ambient_id_token(audience or issuer.audience(), os.environ)
        bearer = issuer.exchange(id_token)
    return issuer.mint(request, bearer, key or default_idempotency_key(request, os.environ))
