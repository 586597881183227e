"""Searching the audit records: one filter, parsed once from query parameters, behind both the
JSON audit API (``GET /v1/statements``) and the web view's statements page, so a page and the
API answer the same question the same way.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from issuer.core.clock import parse_time
from issuer.core.errors import InvalidRequest
from issuer.core.authority import Authority
from issuer.store.audit import STATUS_FILTERS, StatementRecord

#: The filters by their query parameter names (``version``: software_version; ``principal``:
#: who minted, a token name or a local user; ``publisher``: the trusted publisher minted through;
#: ``repository``: the source repository it was built from).
FILTERS = ("template", "software_id", "version", "principal", "publisher", "repository", "kid",
           "since", "until", "status")
MAX_VALUE = 256
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
DAY = 86400


@dataclass(frozen=True)
class StatementQuery:
    """Which statements to list; every field None means all of them."""

    template: str | None = None
    software_id: str | None = None
    version: str | None = None
    principal: str | None = None
    publisher: str | None = None
    repository: str | None = None
    kid: str | None = None
    since: int | None = None  # iat >= since
    until: int | None = None  # iat < until
    status: str | None = None  # active, revoked, suspended, expired
    revoked: bool | None = None
    #: The filters as given (non-empty ones), to put back into links and forms.
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Mapping[str, str | None], now: int) -> StatementQuery:
        """The query of ``params`` (empty values mean no filter); InvalidRequest naming the
        parameter when one is malformed."""
        given = {name: value.strip() for name in FILTERS
                 if (value := params.get(name)) is not None and value.strip()}
        for name, value in given.items():
            if len(value) > MAX_VALUE or not value.isprintable():
                raise InvalidRequest(f"{name}: at most {MAX_VALUE} printable characters")
        status = given.get("status")
        if status is not None and status not in STATUS_FILTERS:
            raise InvalidRequest(f"status: {status!r} is not one of {', '.join(STATUS_FILTERS)}")
        since = _time("since", given.get("since"), now, end_of_day=False)
        until = _time("until", given.get("until"), now, end_of_day=True)
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("until: must be after since")
        return cls(template=given.get("template"), software_id=given.get("software_id"),
                   version=given.get("version"), principal=given.get("principal"),
                   publisher=given.get("publisher"), repository=given.get("repository"),
                   kid=given.get("kid"), since=since, until=until, status=status,
                   given=tuple(given.items()))


def _time(name: str, text: str | None, now: int, *, end_of_day: bool) -> int | None:
    """A bound of the date range; ``until`` given as a bare date includes that whole day."""
    if text is None:
        return None
    try:
        value = parse_time(text, now)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}") from None
    return value + DAY if end_of_day and _DATE.match(text) else value


@dataclass(frozen=True)
class Page:
    """One page of a search and the cursor of the next (None on the last page)."""

    records: list[StatementRecord]
    next_cursor: str | None


def search(authority: Authority, query: StatementQuery, *, limit: int,
           cursor: str | None = None) -> Page:
    """Statements matching ``query`` in issue order, ``limit`` at a time after ``cursor``.
    A statement of a revoked key has the status revoked, as ``POST /v1/status`` says."""
    after = decode_cursor(cursor) if cursor else None
    revoked_kids = [k.kid for k in authority.keystore.keys() if k.state == "revoked"]
    found = authority.audit.statements(
        template=query.template, software_id=query.software_id, software_version=query.version,
        principal=query.principal, publisher=query.publisher, repository=query.repository,
        kid=query.kid, since=query.since, until=query.until,
        status=query.status, revoked=query.revoked, now=authority.now(),
        revoked_kids=revoked_kids, after_index=after, limit=limit + 1)
    more = len(found) > limit
    found = found[:limit]
    return Page(found, encode_cursor(found[-1].log_index) if more else None)


def encode_cursor(log_index: int) -> str:
    return base64.urlsafe_b64encode(f"after:{log_index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "after" or not value.isdigit():
            raise ValueError
        return int(value)
    except ValueError:
        raise InvalidRequest("cursor: not a cursor this service returned") from None
