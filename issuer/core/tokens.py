"""API tokens of the HTTP service: roles, templates, secrets stored only as hashes.

A token reads ``ssi_<id>.<secret>``: ``ssi_`` makes a leaked token recognisable to secret
scanners, ``<id>`` (72 random bits) finds the row without touching the secret, and ``<secret>``
is 256 random bits. Only SHA-256 of the secret is stored (a slow password hash buys nothing
for 256 random bits), and the comparison is constant-time (``hmac.compare_digest``).

A token may expire (``tokens create --expires 30d``); its last use is kept to the minute
(written at most once a minute per token, so a busy pipeline does not turn every request into
a write); ``tokens rotate`` gives a token a new secret under the same name and scope.

A token issued by a CI token exchange (docs/pipelines.md) is a minter token for its
publisher's templates, lives minutes, and carries what the statements it mints keep: the
publisher, the source repository, the provenance and the CI token's verified claims.

Roles (docs/http-api.md):

- ``minter``: mint from the templates the token names, and list those templates;
- ``auditor``: read audit records;
- ``admin``: everything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from issuer.core.clock import rfc3339
from issuer.core.config import RateLimit, parse_rate_limit
from issuer.core.encoding import b64url
from issuer.core.errors import (
    Conflict,
    InsufficientScope,
    InvalidGrant,
    InvalidToken,
    NotFound,
    UsageError,
)
from issuer.core.templates import did_you_mean
from issuer.store.audit import AuditStore
from issuer.store.integrity import credential_digest, logged_token

Role = Literal["minter", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("minter", "auditor", "admin")
PREFIX = "ssi_"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
_TOKEN = re.compile(r"^ssi_([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})\Z")
_COLUMNS = ("name, role, templates, rate_limit, created_at, created_by, revoked_at, expires_at, "
            "last_used_at, rotated_at, publisher, origin, secret_hash")
#: How stale a token's last-used time may be (seconds): at most one write a minute per token.
LAST_USED_GRANULARITY = 60
#: Compared against when the id is unknown, so a miss costs what a hit costs.
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """What the service knows about a token: never its secret."""

    name: str
    role: Role
    templates: tuple[str, ...]
    rate_limit: str | None  # None: the service default; "unlimited"; or "N/minute"
    created_at: int
    created_by: str
    revoked_at: int | None = None
    expires_at: int | None = None
    last_used_at: int | None = None
    rotated_at: int | None = None
    #: Set on tokens a CI token exchange issued: the publisher, and what its statements keep
    #: (``provenance``, ``repository``, ``ci_claims``).
    publisher: str | None = None
    origin: dict[str, Any] | None = None

    def may_mint(self, template: str) -> bool:
        return self.role == "admin" or (self.role == "minter" and template in self.templates)

    def may_audit(self) -> bool:
        return self.role in ("auditor", "admin")

    def limit(self, default: RateLimit | None) -> RateLimit | None:
        """The rate limit that applies: the token's own, or the configured default."""
        return default if self.rate_limit is None else parse_rate_limit(self.rate_limit)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "templates": list(self.templates),
                "rate_limit": self.rate_limit, "created_at": self.created_at,
                "created_by": self.created_by, "revoked_at": self.revoked_at,
                "expires_at": self.expires_at, "last_used_at": self.last_used_at,
                "rotated_at": self.rotated_at, "publisher": self.publisher}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _row_token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(name=row["name"], role=row["role"], templates=tuple(json.loads(row["templates"])),
                    rate_limit=row["rate_limit"], created_at=row["created_at"],
                    created_by=row["created_by"], revoked_at=row["revoked_at"],
                    expires_at=row["expires_at"], last_used_at=row["last_used_at"],
                    rotated_at=row["rotated_at"], publisher=row["publisher"],
                    origin=json.loads(row["origin"]) if row["origin"] else None)


def _new_secret() -> tuple[str, str]:
    """A token id (72 random bits) and secret (256 random bits)."""
    return b64url(secrets.token_bytes(9)), b64url(secrets.token_bytes(32))


class TokenStore:
    """API tokens in the audit database; every change is an audit event."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit

    def create(self, name: str, *, role: str, templates: list[str], rate_limit: str | None,
               actor: str, channel: str, now: int,
               expires_in: int | None = None) -> tuple[ApiToken, str]:
        """A new token and its secret, which is returned here once and never stored."""
        if not NAME.match(name):
            raise UsageError(f"token name {name!r} must match [a-z0-9][a-z0-9._-]{{0,63}}")
        if role not in ROLES:
            raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if role == "minter" and not templates:
            raise UsageError("a minter token needs at least one --template it may mint")
        if role != "minter" and templates:
            raise UsageError(f"--template limits minter tokens only; an {role} token "
                             + ("may mint every template" if role == "admin" else "mints nothing"))
        if rate_limit is not None:
            try:
                parse_rate_limit(rate_limit)
            except ValueError as exc:
                raise UsageError(f"--rate-limit: {exc}") from None
        token = ApiToken(name=name, role=role, templates=tuple(sorted(set(templates))),
                         rate_limit=rate_limit, created_at=now, created_by=actor,
                         expires_at=None if expires_in is None else now + expires_in)
        with self.audit.transaction():
            if self.audit.conn.execute("SELECT 1 FROM api_tokens WHERE name = ?",
                                       (name,)).fetchone():
                raise Conflict(f"a token named '{name}' already exists (names are never reused; "
                               "pick another)")
            secret, credential = self._insert(token)
            self.audit.append_event(time=now, type="token.created", actor=actor, channel=channel,
                                    subject=name, data={**token.public(),
                                                        "credential": credential})
        return token, secret

    def _insert(self, token: ApiToken) -> tuple[str, str]:
        """Insert a token row inside the caller's transaction; its bearer secret, and the
        digest of its credential that the log keeps (docs/audit.md)."""
        token_id, secret = _new_secret()
        self.audit.conn.execute(
            "INSERT INTO api_tokens (name, token_id, secret_hash, role, templates, rate_limit,"
            " created_at, created_by, expires_at, publisher, origin)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (token.name, token_id, _hash(secret), token.role, json.dumps(list(token.templates)),
             token.rate_limit, token.created_at, token.created_by, token.expires_at,
             token.publisher, json.dumps(token.origin) if token.origin is not None else None))
        return f"{PREFIX}{token_id}.{secret}", credential_digest(token_id, _hash(secret))

    def exchange(self, *, publisher: str, templates: Sequence[str], lifetime: int,
                 ci_issuer: str, ci_jti: str, ci_exp: int, origin: dict[str, Any],
                 event: dict[str, Any], now: int) -> tuple[ApiToken, str]:
        """A minter token for a verified CI token. The CI token's ``jti`` is recorded in the
        same transaction, so a replay is refused and a refused replay issues nothing."""
        with self.audit.transaction():
            # Expired CI tokens can't be replayed anyway: their ids need not be kept.
            self.audit.conn.execute("DELETE FROM ci_token_ids WHERE exp < ?",
                                    (now - 24 * 3600,))
            if self.audit.conn.execute("SELECT 1 FROM ci_token_ids WHERE issuer = ? AND jti = ?",
                                       (ci_issuer, ci_jti)).fetchone():
                raise InvalidGrant(f"subject_token: jti {ci_jti!r} was already exchanged (a CI "
                                   "token is accepted once)")
            self.audit.conn.execute("INSERT INTO ci_token_ids (issuer, jti, exp) VALUES (?, ?, ?)",
                                    (ci_issuer, ci_jti, ci_exp))
            token_id = b64url(secrets.token_bytes(6))
            token = ApiToken(name=f"{publisher}@{token_id}", role="minter",
                             templates=tuple(sorted(set(templates))), rate_limit=None,
                             created_at=now, created_by=f"publisher:{publisher}",
                             expires_at=now + lifetime, publisher=publisher, origin=origin)
            secret, credential = self._insert(token)
            self.audit.append_event(time=now, type="oidc.exchanged", actor=token.created_by,
                                    channel="http", subject=publisher,
                                    data={**event, "token": {**token.public(), "origin":
                                                             token.origin,
                                                             "credential": credential}})
        return token, secret

    def rotate(self, name: str, *, actor: str, channel: str, now: int,
               expires_in: int | None = None) -> tuple[ApiToken, str]:
        """A new secret for the same name and scope; the old secret stops working at once.
        Without ``expires_in`` a token that expired keeps its lifetime."""
        with self.audit.transaction():
            token = self.get(name)
            if token.revoked_at is not None:
                raise Conflict(f"token '{name}' was revoked; create a new one")
            if token.publisher is not None:
                raise Conflict(f"token '{name}' came from a CI token exchange; it can't be "
                               "rotated (it expires on its own)")
            if expires_in is None and token.expires_at is not None:
                expires_in = token.expires_at - (token.rotated_at or token.created_at)
            token_id, secret = _new_secret()
            expires_at = None if expires_in is None else now + expires_in
            self.audit.conn.execute(
                "UPDATE api_tokens SET token_id = ?, secret_hash = ?, expires_at = ?, "
                "rotated_at = ?, last_used_at = NULL WHERE name = ?",
                (token_id, _hash(secret), expires_at, now, name))
            self.audit.append_event(time=now, type="token.rotated", actor=actor, channel=channel,
                                    subject=name, data={"name": name, "expires_at": expires_at,
                                                        "credential": credential_digest(
                                                            token_id, _hash(secret))})
        return self.get(name), f"{PREFIX}{token_id}.{secret}"

    def list(self) -> list[ApiToken]:
        return [_row_token(r) for r in self.audit.query("SELECT * FROM api_tokens ORDER BY created_at, name")]

    def get(self, name: str) -> ApiToken:
        rows = self.audit.query("SELECT * FROM api_tokens WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no token named {name!r}")
        return _row_token(rows[0])

    def revoke(self, name: str, *, actor: str, channel: str, now: int) -> ApiToken:
        """Revoke at once; the name stays taken so the record can't be confused later."""
        with self.audit.transaction():
            token = self.get(name)
            if token.revoked_at is not None:
                raise Conflict(f"token '{name}' was already revoked")
            self.audit.conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?",
                                    (now, name))
            self.audit.append_event(time=now, type="token.revoked", actor=actor,
                                    channel=channel, subject=name, data={"name": name})
        return self.get(name)

    def authenticate(self, presented: str, now: int | None = None) -> ApiToken:
        """The token a bearer secret belongs to; InvalidToken for anything else. With ``now``,
        an expired token is refused and the last-used time kept (to the minute)."""
        match = _TOKEN.match(presented)
        if not match:
            raise InvalidToken("the bearer token is malformed (expected ssi_<id>.<secret>)")
        token_id, secret = match.groups()
        rows = self.audit.read(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = ?",
                               (token_id,))
        stored = rows[0][-1] if rows else _DUMMY_HASH
        if not hmac.compare_digest(stored, _hash(secret)) or not rows:
            raise InvalidToken("the bearer token is not valid")
        token = _row_token(dict(zip(_COLUMNS.split(", "), rows[0])))
        if token.revoked_at is not None:
            raise InvalidToken("the bearer token was revoked")
        # The row alone is not trusted: whoever can write the database could insert a token,
        # swap a hash or un-revoke one. It must be what the log says.
        logged = logged_token(self.audit, token.name)
        if (logged is None or logged.get("revoked_at") is not None
                or logged.get("credential") != credential_digest(token_id, stored)
                or (logged.get("role"), logged.get("templates"), logged.get("rate_limit"),
                    logged.get("expires_at"))
                != (token.role, list(token.templates), token.rate_limit, token.expires_at)):
            raise InvalidToken("the bearer token does not match the audit log (run `issuer "
                               "audit verify`)")
        if now is not None:
            if token.expires_at is not None and now >= token.expires_at:
                raise InvalidToken(f"the bearer token expired at {rfc3339(token.expires_at)}")
            if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
                self.audit.touch_token(token_id, now)
        return token


def require_mint(token: ApiToken, template: str) -> None:
    if not token.may_mint(template):
        # Only names this token may mint are suggested: a minter learns no other template.
        raise InsufficientScope(f"token '{token.name}' ({token.role}) may not mint template "
                                f"'{template}'" + did_you_mean(template, token.templates))


def require_audit(token: ApiToken) -> None:
    if not token.may_audit():
        raise InsufficientScope(f"token '{token.name}' ({token.role}) may not read audit records; "
                                "an auditor or admin token may")
