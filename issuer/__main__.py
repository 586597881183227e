"""``python -m issuer`` runs the CLI."""

from issuer.cli import main

main()
