"""``python -m issuer`` runs the CLI."""

from .cli import main

main()
