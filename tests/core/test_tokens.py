"""API tokens from the CLI: shown once, stored hashed, audited, revocable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
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


def test_expiring_tokens(cli: Cli, auth: Authority, clock: FixedClock) -> None:
    made = json.loads(cli("tokens", "create", "ci", "--role", "minter", "--template",
                          "mcp-connector", "--expires", "30d", "--json").stdout)
    secret = made["token"]
    # The CLI reads the real time; the authority under test a fixed one.
    token = auth.tokens.get("ci")
    assert token.expires_at == token.created_at + 30 * 86400 == made["expires_at"]
    clock.t = token.expires_at - 1
    assert auth.tokens.authenticate(secret, auth.now()).name == "ci"
    clock.t = token.expires_at
    with pytest.raises(InvalidToken, match="expired at"):
        auth.tokens.authenticate(secret, auth.now())
    assert "EXPIRES" in cli("tokens", "list").stdout
    assert_one_line_error(cli("tokens", "create", "x", "--role", "auditor", "--expires", "soon"),
                          2, "--expires")


def test_last_used_is_kept_to_the_minute(auth: Authority, clock: FixedClock) -> None:
    _, secret = auth.tokens.create("ci", role="auditor", templates=[], rate_limit=None,
                                   actor="t", channel="cli", now=auth.now())
    assert auth.tokens.get("ci").last_used_at is None
    auth.tokens.authenticate(secret, auth.now())
    first = auth.now()
    assert auth.tokens.get("ci").last_used_at == first
    clock.advance(30)
    auth.tokens.authenticate(secret, auth.now())
    assert auth.tokens.get("ci").last_used_at == first  # no write within the minute
    clock.advance(30)
    auth.tokens.authenticate(secret, auth.now())
    assert auth.tokens.get("ci").last_used_at == first + 60
    assert [e.type for e in auth.audit.events(type_prefix="token.")] == ["token.created"]


def test_rotate_keeps_name_and_scope_and_kills_the_old_secret(cli: Cli, auth: Authority,
                                                              clock: FixedClock) -> None:
    _, old = auth.tokens.create("ci", role="minter", templates=["mcp-connector"],
                                rate_limit="60/minute", actor="t", channel="cli",
                                now=auth.now(), expires_in=7 * 86400)
    clock.advance(86400)
    token, new = auth.tokens.rotate("ci", actor="t", channel="cli", now=auth.now())
    assert new != old and new.startswith("ssi_")
    assert (token.role, token.templates, token.rate_limit) == ("minter", ("mcp-connector",),
                                                              "60/minute")
    assert token.expires_at == auth.now() + 7 * 86400  # the same lifetime, from now
    with pytest.raises(InvalidToken):
        auth.tokens.authenticate(old, auth.now())
    assert auth.tokens.authenticate(new, auth.now()).name == "ci"
    rotated = json.loads(cli("tokens", "rotate", "ci", "--expires", "1d", "--json").stdout)
    assert rotated["name"] == "ci" and rotated["token"] != new
    with pytest.raises(InvalidToken):
        auth.tokens.authenticate(new)
    assert [e.type for e in auth.audit.events(type_prefix="token.")] == [
        "token.created", "token.rotated", "token.rotated"]
    assert all("ssi_" not in json.dumps(e.data) for e in auth.audit.events())
    cli("tokens", "revoke", "ci")
    assert_one_line_error(cli("tokens", "rotate", "ci"), 1, "revoked")
    assert_one_line_error(cli("tokens", "rotate", "ghost"), 1, "no token named 'ghost'")
