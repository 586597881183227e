"""``make run``: a demo issuer in the repository root, initialised on first run.

It mints one statement per shipped template and verifies each as an authorization server
would, printing them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .authority import Authority, init_issuer, local_principal
from .config import CONFIG_FILE
from .errors import IssuerError
from .statements import MintRequest

DEMO_ISSUER = "http://127.0.0.1:8000"


def demo_home() -> Path:
    return Path.cwd()


def open_demo(home: Path) -> Authority:
    """The demo issuer in ``home``, created on first run."""
    if not (home / CONFIG_FILE).exists():
        auth = init_issuer(home, issuer=DEMO_ISSUER, alg="ES256", actor=local_principal())
        print(f"initialised a demo issuer in {home} (issuer.toml, keys/, templates/, issuer.db)")
        return auth
    return Authority.from_config(home / CONFIG_FILE)


def mint_and_verify(auth: Authority) -> None:
    """One statement per template that needs no more than a software_version."""
    for name in auth.templates.names():
        template = auth.templates.load(name)
        values = {"software_version": "1.0.0"} if "software_version" in template.required else {}
        result = auth.mint(MintRequest(name, values), principal=local_principal(),
                           channel="cli")
        verified = auth.verify(result.software_statement)
        print(f"\n== {name}: jti {result.jti}, digest {result.digest[:16]}..., verified "
              f"with kid {verified.kid}")
        print(result.software_statement)


def main() -> int:
    try:
        auth = open_demo(demo_home())
        try:
            mint_and_verify(auth)
        finally:
            auth.close()
    except IssuerError as exc:
        print(f"issuer: error: {exc.description}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
