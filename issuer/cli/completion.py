"""``issuer completion SHELL``: the shell completion script (docs/cli.md)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from .common import config_option

SHELLS = ("bash", "zsh", "fish")


@click.command()
@config_option
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options and choices complete on TAB.

    Needs no issuer: --config is accepted and ignored.

    \b
    Example (bash; zsh and fish alike, in their own startup files):
      issuer completion bash > ~/.local/share/bash-completion/completions/issuer
    """
    root = click.get_current_context().find_root()
    complete = get_completion_class(shell)
    assert complete is not None  # every name of SHELLS is one click ships
    click.echo(complete(root.command, {}, "issuer", "_ISSUER_COMPLETE").source())
