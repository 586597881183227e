"""Web view sign-ins: server-side sessions behind an opaque cookie, and CSRF tokens.

The cookie holds 256 random bits and nothing else; the service keeps only their SHA-256, so a
copy of its memory cannot be replayed as a cookie. A session names the API token it was opened
with, and every request checks that token again: revoking the token ends its sessions.
Sessions end at sign-out and ``session_lifetime`` after sign-in, whichever comes first.

Sessions live in the serving process: a restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from issuer.core.clock import Clock

COOKIE = "ssi_session"
#: The sign-in form's double-submit cookie: a cross-site page cannot read it to forge the
#: form (login CSRF), and SameSite=Strict keeps it off cross-site requests anyway.
SIGN_IN_COOKIE = "ssi_sign_in"
PATH = "/ui"


@dataclass(frozen=True)
class Session:
    """One sign-in: whose token, its CSRF token for forms, and when it ends."""

    token_name: str
    csrf: str
    expires: int


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """A constant-time comparison of a submitted CSRF token."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                     expected.encode("utf-8"))


class Sessions:
    """Open sessions by the hash of their cookie."""

    def __init__(self, clock: Clock, lifetime: int) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token_name: str) -> tuple[str, Session]:
        """A new session for ``token_name``; returns the cookie value (shown only here)."""
        cookie = secrets.token_urlsafe(32)
        session = Session(token_name, secrets.token_urlsafe(32),
                          int(self.clock.now()) + self.lifetime)
        with self._lock:
            self._drop_expired()
            self._open[_key(cookie)] = session
        return cookie, session

    def find(self, cookie: str | None) -> tuple[Session | None, bool]:
        """The session a cookie opens, and whether a cookie was sent whose session expired."""
        if not cookie:
            return None, False
        with self._lock:
            session = self._open.get(_key(cookie))
            if session is not None and session.expires <= self.clock.now():
                del self._open[_key(cookie)]
                return None, True
        return session, False

    def close(self, cookie: str | None) -> None:
        if cookie:
            with self._lock:
                self._open.pop(_key(cookie), None)

    def _drop_expired(self) -> None:
        now = self.clock.now()
        for key in [k for k, s in self._open.items() if s.expires <= now]:
            del self._open[key]
