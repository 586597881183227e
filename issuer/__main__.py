"""``python -m issuer`` and the ``issuer`` command: the CLI, or a one-line answer when only
the verifier is installed (``pip install software-statement-issuer`` without ``[issuer]``)."""

from __future__ import annotations

import sys

#: What the issuer's own fronts need beyond the verifier's dependencies.
ISSUER_ONLY = ("click", "fastapi", "uvicorn", "sqlalchemy")


def main() -> None:
    try:
        from issuer.cli import main as cli
    except ModuleNotFoundError as exc:
        if exc.name not in ISSUER_ONLY:
            raise
        sys.stderr.write(f"issuer: error: this is the verifier-only install ({exc.name} is "
                         "missing); install 'software-statement-issuer[issuer]' for the "
                         "issuer's command line and service\n")
        sys.exit(2)
    cli()


if __name__ == "__main__":
    main()
