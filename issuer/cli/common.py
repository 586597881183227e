"""Shared plumbing of the command line: errors as one line and an exit code, ``--config``,
``--json``, and the one :class:`~issuer.core.authority.Authority` a command works on."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from issuer.core.authority import Authority
from issuer.core.clock import rfc3339
from issuer.core.config import SIGNING_ALGS
from issuer.core.errors import IssuerError

F = TypeVar("F", bound=Callable[..., Any])
ALG_CHOICES = [*SIGNING_ALGS, "EdDSA"]


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


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def when(t: int | None) -> str:
    return rfc3339(t) if t is not None else "-"
