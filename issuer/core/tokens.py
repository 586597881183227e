"""API tokens of the HTTP service: roles, templates, secrets stored only as hashes.

A token reads ``ssi_<id>.<secret>``: ``ssi_`` makes a leaked token recognisable to secret
scanners, ``<id>`` (72 random bits) finds the row without touching the secret, and ``<secret>``
is 256 random bits. Only SHA-256 of the secret is stored (a slow password hash buys nothing
for 256 random bits), and the comparison is constant-time (``hmac.compare_digest``).

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
from dataclasses import dataclass
from typing import Any, Literal

from issuer.core.config import RateLimit, parse_rate_limit
from issuer.core.encoding import b64url
from issuer.core.errors import Conflict, InsufficientScope, InvalidToken, NotFound, UsageError
from issuer.core.templates import did_you_mean
from issuer.store.audit import AuditStore

Role = Literal["minter", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("minter", "auditor", "admin")
PREFIX = "ssi_"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^ssi_([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})$")
_COLUMNS = "name, role, templates, rate_limit, created_at, created_by, revoked_at, secret_hash"
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
                "created_by": self.created_by, "revoked_at": self.revoked_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _row_token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(name=row["name"], role=row["role"], templates=tuple(json.loads(row["templates"])),
                    rate_limit=row["rate_limit"], created_at=row["created_at"],
                    created_by=row["created_by"], revoked_at=row["revoked_at"])


class TokenStore:
    """API tokens in the audit database; every change is an audit event."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit

    def create(self, name: str, *, role: str, templates: list[str], rate_limit: str | None,
               actor: str, channel: str, now: int) -> tuple[ApiToken, str]:
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
        token_id, secret = b64url(secrets.token_bytes(9)), b64url(secrets.token_bytes(32))
        token = ApiToken(name=name, role=role, templates=tuple(sorted(set(templates))),
                         rate_limit=rate_limit, created_at=now, created_by=actor)
        with self.audit.transaction():
            if self.audit.conn.execute("SELECT 1 FROM api_tokens WHERE name = ?",
                                       (name,)).fetchone():
                raise Conflict(f"a token named '{name}' already exists (names are never reused; "
                               "pick another)")
            self.audit.conn.execute(
                "INSERT INTO api_tokens (name, token_id, secret_hash, role, templates, rate_limit,"
                " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, token_id, _hash(secret), role, json.dumps(list(token.templates)),
                 rate_limit, now, actor))
            self.audit.append_event(time=now, type="token.created", actor=actor, channel=channel,
                                    subject=name, data=token.public())
        return token, f"{PREFIX}{token_id}.{secret}"

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

    def authenticate(self, presented: str) -> ApiToken:
        """The token a bearer secret belongs to; InvalidToken for anything else."""
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
