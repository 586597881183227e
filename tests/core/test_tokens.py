"""API tokens from the CLI: shown once, stored hashed, audited, revocable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from issuer.core.authority import Authority
from issuer.core.errors import InvalidToken
from tests.conftest import Cli, assert_one_line_error


def test_create_prints_the_secret_once(cli: Cli, home: Path) -> None:
    made = cli("tokens", "create", "ci-acme", "--role", "minter", "--template", "mcp-connector",
               "--template", "desktop-agent", "--rate-limit", "60/minute")
    assert made.exit_code == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("ssi_") and "shown only now" in made.stderr
    listed = cli("tokens", "list", "--json")
    assert secret not in listed.stdout
    entry = json.loads(listed.stdout)[0]
    assert entry == {"name": "ci-acme", "role": "minter",
                     "templates": ["desktop-agent", "mcp-connector"], "rate_limit": "60/minute",
                     "created_at": entry["created_at"], "created_by": entry["created_by"],
                     "revoked_at": None, "expires_at": None, "last_used_at": None,
                     "rotated_at": None, "publisher": None}
    assert "ci-acme" in cli("tokens", "list").stdout
    dump = "\n".join(sqlite3.connect(home / "issuer.db").iterdump())
    assert secret not in dump and secret.split(".")[1] not in dump
    as_json = json.loads(cli("tokens", "create", "auditor-1", "--role", "auditor", "--json").stdout)
    assert set(as_json) == {"name", "role", "templates", "token"} and as_json["templates"] == []


def test_authenticate_and_revoke(cli: Cli, auth: Authority) -> None:
    secret = cli("tokens", "create", "ci", "--role", "admin").stdout.strip()
    assert auth.tokens.authenticate(secret).name == "ci"
    revoked = cli("tokens", "revoke", "ci")
    assert revoked.exit_code == 0 and "revoked token 'ci'" in revoked.stdout
    with pytest.raises(InvalidToken, match="revoked"):
        auth.tokens.authenticate(secret)
    assert_one_line_error(cli("tokens", "revoke", "ci"), 1, "already revoked")
    assert_one_line_error(cli("tokens", "revoke", "ghost"), 1, "no token named 'ghost'")
    events = [(e.type, e.subject) for e in auth.audit.events(type_prefix="token.")]
    assert events == [("token.created", "ci"), ("token.revoked", "ci")]
    assert all("ssi_" not in json.dumps(e.data) for e in auth.audit.events())


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["tokens", "create", "m", "--role", "minter"], 2, "needs at least one --template"),
        (["tokens", "create", "m", "--role", "minter", "--template", "nope"], 1,
         "no template named 'nope'"),
        (["tokens", "create", "a", "--role", "admin", "--template", "mcp-connector"], 2,
         "limits minter tokens only"),
        (["tokens", "create", "x", "--role", "root"], 2, "Invalid value for '--role'"),
        (["tokens", "create", "Bad Name", "--role", "auditor"], 2, "must match"),
        (["tokens", "create", "r", "--role", "auditor", "--rate-limit", "fast"], 2, "--rate-limit"),
    ],
)
def test_token_errors(cli: Cli, args: list[str], code: int, text: str) -> None:
    assert_one_line_error(cli(*args), code, text)


def test_names_are_never_reused(cli: Cli) -> None:
    cli("tokens", "create", "ci", "--role", "auditor")
    cli("tokens", "revoke", "ci")
    assert_one_line_error(cli("tokens", "create", "ci", "--role", "auditor"), 1, "already exists")


@pytest.mark.parametrize("presented", ["", "ssi_", "Bearer x", "ssi_short.secret",
                                       "ssi_AAAAAAAAAAAA." + "A" * 43, "ssi_" + "A" * 56])
def test_unknown_or_malformed_secrets(auth: Authority, presented: str) -> None:
    with pytest.raises(InvalidToken):
        auth.tokens.authenticate(presented)
