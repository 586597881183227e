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


def test_each_role_has_exactly_its_scope(auth: Authority) -> None:
    """docs/http-api.md: a minter mints only the templates it names and reads no audit
    records; an auditor reads them and mints nothing; an admin does both."""
    from issuer.core.errors import InsufficientScope
    from issuer.core.tokens import require_audit, require_mint

    made = {role: auth.tokens.create(f"t-{role}", role=role, rate_limit=None, actor="t",
                                     channel="cli", now=auth.now(),
                                     templates=["mcp-connector"] if role == "minter" else [])[0]
            for role in ("minter", "auditor", "admin")}
    minter, auditor, admin = made["minter"], made["auditor"], made["admin"]
    assert minter.may_mint("mcp-connector") and not minter.may_mint("desktop-agent")
    assert not minter.may_audit()
    assert not auditor.may_mint("mcp-connector") and auditor.may_audit()
    assert admin.may_mint("mcp-connector") and admin.may_mint("desktop-agent")
    assert admin.may_audit()
    require_mint(minter, "mcp-connector")
    require_mint(admin, "anything")
    require_audit(auditor)
    require_audit(admin)
    # a near miss is suggested only from the token's own templates
    with pytest.raises(InsufficientScope, match=r"may not mint template 'mcp-conector'; did you "
                                                r"mean 'mcp-connector'\?"):
        require_mint(minter, "mcp-conector")
    with pytest.raises(InsufficientScope, match=r"may not mint template 'desktop-agnt'$"):
        require_mint(minter, "desktop-agnt")
    with pytest.raises(InsufficientScope, match="'t-auditor' \\(auditor\\) may not mint"):
        require_mint(auditor, "mcp-connector")
    with pytest.raises(InsufficientScope, match="'t-minter' \\(minter\\) may not read audit"):
        require_audit(minter)


def test_a_token_rate_limit_overrides_the_default(auth: Authority) -> None:
    from issuer.core.config import RateLimit

    default = RateLimit(600, 60)
    own, _ = auth.tokens.create("own", role="auditor", templates=[], rate_limit="5/minute",
                                actor="t", channel="cli", now=auth.now())
    unlimited, _ = auth.tokens.create("free", role="auditor", templates=[],
                                      rate_limit="unlimited", actor="t", channel="cli",
                                      now=auth.now())
    inherits, _ = auth.tokens.create("std", role="auditor", templates=[], rate_limit=None,
                                     actor="t", channel="cli", now=auth.now())
    assert own.limit(default) == RateLimit(5, 60)
    assert unlimited.limit(default) is None
    assert inherits.limit(default) == default and inherits.limit(None) is None


def test_the_right_id_with_another_secret_is_refused(auth: Authority) -> None:
    """The id only finds the row; the secret must hash to what is stored (compared in
    constant time), whatever token it belongs to."""
    _, secret = auth.tokens.create("ci", role="admin", templates=[], rate_limit=None,
                                   actor="t", channel="cli", now=auth.now())
    _, other = auth.tokens.create("other", role="auditor", templates=[], rate_limit=None,
                                  actor="t", channel="cli", now=auth.now())
    token_id = secret.split(".")[0]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for presented in (flipped, token_id + "." + other.split(".")[1]):
        with pytest.raises(InvalidToken, match="the bearer token is not valid"):
            auth.tokens.authenticate(presented, auth.now())
    assert auth.tokens.authenticate(secret, auth.now()).name == "ci"
    assert auth.tokens.get("ci").last_used_at == auth.now()
    assert auth.tokens.get("other").last_used_at is None
    with pytest.raises(InvalidToken, match=r"malformed \(expected ssi_<id>\.<secret>\)"):
        auth.tokens.authenticate(secret + "x", auth.now())


def test_rotation_keeps_or_sets_the_lifetime(auth: Authority, clock: FixedClock) -> None:
    """A token that never expires still never expires after ``tokens rotate``; an explicit
    lifetime replaces the old one, counted from the rotation."""
    auth.tokens.create("forever", role="auditor", templates=[], rate_limit=None, actor="t",
                       channel="cli", now=auth.now())
    auth.tokens.create("week", role="auditor", templates=[], rate_limit=None, actor="t",
                       channel="cli", now=auth.now(), expires_in=7 * 86400)
    clock.advance(3600)
    token, secret = auth.tokens.rotate("forever", actor="t", channel="cli", now=auth.now())
    assert token.expires_at is None and token.rotated_at == auth.now()
    assert auth.tokens.authenticate(secret, auth.now() + 10 * 365 * 86400).name == "forever"
    token, _ = auth.tokens.rotate("week", actor="t", channel="cli", now=auth.now(),
                                  expires_in=86400)
    assert token.expires_at == auth.now() + 86400
    token, _ = auth.tokens.rotate("forever", actor="t", channel="cli", now=auth.now(),
                                  expires_in=600)
    assert token.expires_at == auth.now() + 600


def test_an_exchanged_token_keeps_its_publisher_and_origin_and_is_never_rotated(
        auth: Authority) -> None:
    """A CI token exchange issues a short-lived minter token; read back from the store it
    still names its publisher and origin, so it can't be rotated into a long-lived one, and
    the same CI token (issuer, jti) is accepted once."""
    from issuer.core.errors import Conflict, InvalidGrant

    origin = {"provenance": "https://ci.example/run/1", "repository": "acme/app",
              "ci_claims": {"sub": "repo:acme/app"}}
    made, secret = auth.tokens.exchange(
        publisher="acme", templates=["mcp-connector"], lifetime=600,
        ci_issuer="https://ci.example", ci_jti="j1", ci_exp=auth.now() + 300, origin=origin,
        event={"ci": "test"}, now=auth.now())
    stored = auth.tokens.get(made.name)
    assert (stored.publisher, stored.origin, stored.expires_at) == ("acme", origin,
                                                                    auth.now() + 600)
    assert (stored.created_by, stored.role, stored.templates) == ("publisher:acme", "minter",
                                                                  ("mcp-connector",))
    assert auth.tokens.authenticate(secret, auth.now()).origin == origin
    with pytest.raises(Conflict, match="came from a CI token exchange"):
        auth.tokens.rotate(made.name, actor="t", channel="cli", now=auth.now())
    with pytest.raises(InvalidGrant, match="already exchanged"):
        auth.tokens.exchange(publisher="acme", templates=["mcp-connector"], lifetime=600,
                             ci_issuer="https://ci.example", ci_jti="j1",
                             ci_exp=auth.now() + 300, origin=origin, event={}, now=auth.now())


def test_an_exchanged_ci_token_stays_refused_while_it_could_still_verify(
        auth: Authority) -> None:
    """The record of an exchanged CI token's ``jti`` outlives the token's ``exp`` plus the
    leeway its verifier allows (RFC 7519 section 4.1.4): a replay a moment after ``exp`` is
    refused, not accepted because the record was pruned."""
    from issuer.core.errors import InvalidGrant
    from issuer.core.publishers import LEEWAY

    exp = auth.now() + 300

    def exchange(now: int) -> None:
        auth.tokens.exchange(publisher="acme", templates=["mcp-connector"], lifetime=600,
                             ci_issuer="https://ci.example", ci_jti="j1", ci_exp=exp,
                             origin={}, event={}, now=now)

    exchange(auth.now())
    for late in (exp, exp + LEEWAY - 1, exp + LEEWAY + 3600):
        with pytest.raises(InvalidGrant, match="already exchanged"):
            exchange(late)


def test_each_exchange_is_its_own_token_and_audit_record(auth: Authority) -> None:
    """Two CI runs of one publisher get two minter tokens, each named for its own id, and the
    log records each exchange with the CI provenance it was made from."""
    origins = [{"provenance": f"https://ci.example/run/{n}", "repository": "acme/app"}
               for n in (1, 2)]
    made = [auth.tokens.exchange(publisher="acme", templates=["mcp-connector"], lifetime=600,
                                 ci_issuer="https://ci.example", ci_jti=f"j{n}",
                                 ci_exp=auth.now() + 300, origin=origin, event={"run": n},
                                 now=auth.now())[0] for n, origin in enumerate(origins)]
    assert made[0].name != made[1].name
    assert all(token.name.startswith("acme@") and len(token.name) == len("acme@") + 8
               for token in made)  # 6 random bytes, base64url
    logged = [event for event in auth.audit.events() if event.type == "oidc.exchanged"]
    assert [(e.channel, e.subject, e.data["run"], e.data["token"]["origin"]) for e in logged] \
        == [("http", "acme", n, origin) for n, origin in enumerate(origins)]
