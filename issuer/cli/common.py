"""Shared plumbing of the command line: errors as one line (or one JSON object) and an exit
code, ``-h`` everywhere, identifiers that begin with '-', Ctrl-C, ``--config``, ``--json``, and
the one :class:`~issuer.core.authority.Authority` a command works on.

Everything here applies to every command of the tree through :class:`IssuerGroup`, so a command
added later inherits it without doing anything (docs/cli.md, "Conventions").
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from issuer.core.authority import Authority
from issuer.core.checks import Report
from issuer.core.clock import rfc3339
from issuer.core.config import SIGNING_ALGS
from issuer.core.errors import IssuerError

F = TypeVar("F", bound=Callable[..., Any])
ALG_CHOICES = [*SIGNING_ALGS, "EdDSA"]

#: The exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130
HELP_OPTIONS = ("-h", "--help")
INTERRUPTED = ("interrupted (Ctrl-C); every change is one transaction, recorded in full or not at "
               "all, so nothing is half-written")

#: Set for one run of the command line when ``--json`` was given: errors become JSON objects.
_json_errors: contextvars.ContextVar[bool] = contextvars.ContextVar("json_errors", default=False)
#: What is true when Ctrl-C stops the running command (see :func:`on_interrupt`).
_interrupted: contextvars.ContextVar[str] = contextvars.ContextVar("interrupted",
                                                                   default=INTERRUPTED)


def on_interrupt(message: str) -> None:
    """Say what Ctrl-C means from here on in this command, when the generic message is not
    the whole truth (a wait that changed nothing, a server that stopped cleanly)."""
    _interrupted.set(message)


def fail(message: str, code: int = 1, error: str | None = None) -> NoReturn:
    """Report an error and exit: one line on stderr, ``issuer: error: ...``; with ``--json``,
    the object ``{"error", "error_description"}`` of the HTTP API (docs/http-api.md)."""
    if _json_errors.get():
        error = error or ("invalid_request" if code == 2 else "command_failed")
        click.echo(json.dumps({"error": error, "error_description": " ".join(message.split())},
                              ensure_ascii=False), err=True)
    else:
        click.echo(f"issuer: error: {message}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    """A warning on stderr that does not stop the command."""
    click.echo(f"issuer: warning: {message}", err=True)


class IssuerGroup(click.Group):
    """The root of the command tree: turns every error into one line (or one JSON object) on
    stderr and an exit code, Ctrl-C into exit 130, and lets identifiers begin with '-'."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        reset = _json_errors.set(wants_json(argv)), _interrupted.set(INTERRUPTED)
        try:
            rv = super().main(identifiers_last(self, argv), prog_name or "issuer",
                              complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "issuer"
            fail(f"{exc.format_message()} (see '{where} --help')", 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                fail(_interrupted.get(), EXIT_INTERRUPTED, "interrupted")
            fail("aborted", 1, "aborted")
        except KeyboardInterrupt:  # outside click's own handler (closing the context)
            fail(_interrupted.get(), EXIT_INTERRUPTED, "interrupted")
        except IssuerError as exc:
            fail(exc.description, exc.exit_code, exc.error)
        except BrokenPipeError:
            sys.exit(1)
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            if os.environ.get("ISSUER_DEBUG"):
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (ISSUER_DEBUG=1 shows a "
                 "traceback)", 1, "server_error")
        finally:
            _json_errors.reset(reset[0])
            _interrupted.reset(reset[1])
        sys.exit(rv if isinstance(rv, int) else 0)


def wants_json(argv: Sequence[str]) -> bool:
    """``--json`` among the options (not after ``--``): errors are then JSON too, even a usage
    error found before the command could read its own flag."""
    options = argv[:argv.index("--")] if "--" in argv else argv
    return "--json" in options


#: For commands taking a kid, jti or digest: base64url identifiers may begin with '-' (even
#: '-h...'). :func:`identifiers_last` moves such an argument behind ``--`` before click parses
#: the line, so it reaches the command as the identifier while ``-h`` still asks for help.
IDENTIFIER_ARGS: dict[str, Any] = {"ignore_unknown_options": True}


def identifiers_last(root: click.Group, argv: list[str]) -> list[str]:
    """Find the command ``argv`` names; if it takes identifiers, move every argument that
    begins with '-' but is no option of the command behind ``--``."""
    command: click.Command = root
    i = 0
    while isinstance(command, click.Group):
        while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
            option = _options(command).get(argv[i].split("=", 1)[0])
            if option is None:
                return argv  # not ours to judge: click reports it
            i += 1 if _takes_no_value(option, argv[i]) else 2
        sub = command.get_command(click.Context(command), argv[i]) if i < len(argv) else None
        if sub is None:
            return argv
        command, i = sub, i + 1
    if not command.context_settings.get("ignore_unknown_options"):
        return argv
    return argv[:i] + _split_identifiers(command, argv[i:])


def _split_identifiers(command: click.Command, args: list[str]) -> list[str]:
    options = _options(command)
    kept: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            moved += args[i + 1:]
            break
        option = options.get(arg.split("=", 1)[0])
        if arg in HELP_OPTIONS:
            kept.append(arg)
        elif option is not None:
            kept += args[i:i + (1 if _takes_no_value(option, arg) else 2)]
            i += 0 if _takes_no_value(option, arg) else 1
        elif arg.startswith("-") and len(arg) > 1:
            near = difflib.get_close_matches(arg, [o for o in options if o.startswith("--")],
                                             n=1, cutoff=0.8)
            if near:  # a mistyped option, not a random identifier
                raise click.NoSuchOption(arg, possibilities=near)
            moved.append(arg)
        else:
            kept.append(arg)
        i += 1
    return [*kept, "--", *moved] if moved else kept


def _options(command: click.Command) -> dict[str, click.Option]:
    found = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in [*param.opts, *param.secondary_opts]:
                found[name] = param
    return found


def _takes_no_value(option: click.Option, arg: str) -> bool:
    return option.is_flag or option.count or "=" in arg


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().meta["issuer.config"] = value


def config_option(f: F) -> F:
    """``--config PATH`` on every command (lookup: --config, $ISSUER_CONFIG, ./issuer.toml;
    docs/configuration.md)."""
    return click.option("--config", type=click.Path(dir_okay=False), expose_value=False,
                        callback=_remember_config, is_eager=True,
                        help="issuer.toml to use (default: $ISSUER_CONFIG, then ./issuer.toml).")(f)


def claim_options(f: F) -> F:
    """``--set CLAIM=VALUE`` (repeat it for an array claim) and ``--set-json CLAIM=JSON``: the
    template's overridable claims, wherever a statement is minted (mint, cimd export)."""
    f = click.option("--set-json", "set_jsons", multiple=True, metavar="CLAIM=JSON",
                     help="Set an overridable claim to a JSON value.")(f)
    return click.option("--set", "sets", multiple=True, metavar="CLAIM=VALUE",
                        help="Set an overridable claim; repeat for an array claim like "
                             "redirect_uris.")(f)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON; errors too, as {error, error_description} on stderr.")


def authority() -> Authority:
    """The authority of the configured issuer, built once per command and closed after it."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "issuer.authority" not in root.meta:
        built = Authority.from_config(root.meta.get("issuer.config"), prompt=terminal_prompt())
        root.meta["issuer.authority"] = built
        root.call_on_close(built.close)
    return root.meta["issuer.authority"]  # type: ignore[no-any-return]


def terminal_prompt() -> Callable[[str], str | None] | None:
    """Asks for a secret on the terminal without echo; None when stdin is not a terminal."""
    if not sys.stdin.isatty():
        return None

    def ask(text: str) -> str | None:
        return click.prompt(text.rstrip(": "), hide_input=True, err=True,
                            default="", show_default=False) or None

    return ask


def echo_report(report: Report) -> None:
    """One line per check: ``ok`` or ``FAIL``, then each problem it found."""
    for result in report.results:
        outcome = result.outcome
        if outcome.ok:
            click.echo(f"ok    {result.name} ({outcome.checked} checked)")
            continue
        click.echo(f"FAIL  {result.name}")
        for problem in outcome.problems:
            click.echo(f"      {problem}")
        if outcome.failures > len(outcome.problems):
            click.echo(f"      ... and {outcome.failures - len(outcome.problems)} more")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def when(t: int | None) -> str:
    return rfc3339(t) if t is not None else "-"
