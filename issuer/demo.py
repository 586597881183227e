"""``make run``: a demo issuer in the current directory (the repository root), served.

On the first run it initialises the issuer (issuer.toml, keys/, templates/, issuer.db) and
creates a demo minter token, whose secret it prints once and keeps (mode 0600) in
``demo-minter.token`` so the printed ``curl`` command keeps working. Then it serves on
``service.host:service.port`` (127.0.0.1:8000 unless overridden).
"""

from __future__ import annotations

import sys
from pathlib import Path

from issuer.core.authority import Authority, init_issuer, local_principal
from issuer.core.config import CONFIG_FILE
from issuer.core.errors import IssuerError, NotFound
from issuer.core.files import atomic_write

DEMO_ISSUER = "http://127.0.0.1:8000"
DEMO_TOKEN = "demo-minter"
TOKEN_FILE = "demo-minter.token"


def open_demo(home: Path) -> Authority:
    """The demo issuer in ``home``, created on first run."""
    if not (home / CONFIG_FILE).exists():
        auth = init_issuer(home, issuer=DEMO_ISSUER, alg="ES256", actor=local_principal())
        auth.close()
        print(f"initialised a demo issuer in {home} (issuer.toml, keys/, templates/, issuer.db)")
    return Authority.from_config(home / CONFIG_FILE)


def ensure_demo_token(auth: Authority, home: Path) -> None:
    """A minter token for every shipped template; the secret is printed only when created."""
    path = home / TOKEN_FILE
    try:
        token = auth.tokens.get(DEMO_TOKEN)
        if token.revoked_at is None and path.exists():
            return
        name = f"{DEMO_TOKEN}-{auth.now()}"  # revoked or lost: names are never reused
    except NotFound:
        name = DEMO_TOKEN
    _, secret = auth.tokens.create(name, role="minter", templates=auth.templates.names(),
                                   rate_limit=None, actor=local_principal(), channel="cli",
                                   now=auth.now())
    atomic_write(path, (secret + "\n").encode(), mode=0o600)
    print(f"created minter token '{name}' (shown once, kept in {TOKEN_FILE}, mode 0600):")
    print(f"  {secret}")


def print_tour(auth: Authority) -> None:
    service = auth.config.service
    base = f"http://{service.host}:{service.port}"
    print(f"\nserving {auth.config.issuer} on {base}")
    print(f"  JWKS:      {base}/.well-known/jwks.json")
    print(f"  metadata:  {base}/.well-known/software-statement-issuer")
    print(f"  OpenAPI:   {base}/openapi.json")
    print(f"  web view:  {base}/ui/ (sign in with an auditor token: "
          "issuer tokens create NAME --role auditor)")
    print(f"  metrics:   {base}/metrics")
    print("\nmint a statement:")
    print(f"  curl -s -X POST {base}/v1/statements \\\n"
          f"    -H \"Authorization: Bearer $(cat {TOKEN_FILE})\" \\\n"
          "    -H 'Content-Type: application/json' \\\n"
          "    -d '{\"template\": \"mcp-connector\", \"claims\": {\"software_version\": \"1.4.2\"}}'")
    print("\nverify it as an authorization server would:")
    print("  ... | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"software_statement\"])'"
          f" | .venv/bin/issuer verify - --jwks {base}/.well-known/jwks.json --issuer "
          f"{auth.config.issuer}\n")
    sys.stdout.flush()


def main() -> int:
    from issuer.service.app import serve

    home = Path.cwd()
    try:
        auth = open_demo(home)
        ensure_demo_token(auth, home)
        auth.keystore.signer()
    except IssuerError as exc:
        print(f"issuer: error: {exc.description}", file=sys.stderr)
        return exc.exit_code
    print_tour(auth)
    try:
        serve(auth, auth.config.service.host, auth.config.service.port)
    finally:
        auth.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
