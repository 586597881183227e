"""The ``issuer`` command line: a thin front over :class:`issuer.core.authority.Authority`.

Every command takes ``--config``; data commands take ``--json``. Errors are one line on stderr
(``issuer: error: ...``) with exit 1 when the thing checked failed or was not found and exit 2
for usage and configuration errors; never a traceback (``ISSUER_DEBUG=1`` shows one).

One module per command group; this one only assembles the tree.
"""

from __future__ import annotations

import click

from .audit import audit
from .cimd import cimd
from .common import IssuerGroup, config_option
from .init import init
from .keys import jwks_command, keys
from .mint import mint
from .publishers import publishers
from .revoke import revoke
from .serve import serve
from .templates import templates
from .tokens import tokens
from .verify import verify_command


@click.group(cls=IssuerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="software-statement-issuer", prog_name="issuer")
def cli() -> None:
    """Mint, publish and audit OAuth software statements (RFC 7591 section 2.3).

    Start with `issuer init`, then `issuer mint TEMPLATE`. See docs/cli.md.
    """


for command in (init, keys, jwks_command, templates, mint, verify_command, revoke, audit,
                tokens, publishers, serve, cimd):
    cli.add_command(command)


def main() -> None:
    """Console script entry point."""
    cli.main(prog_name="issuer")
