"""Time: an injectable clock, durations and RFC 3339 timestamps.

Every component that reads the time takes a :class:`Clock`, so tests of expiry and rotation
pass a time instead of sleeping.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Protocol

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*\Z")


class Clock(Protocol):
    """Something that tells the time in POSIX seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, start: float) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def parse_duration(text: object) -> int:
    """Parse ``"400d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` (or a bare int of seconds).

    Raises ValueError with the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration like '180d', '12h', '30m', '45s' or '2w'")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError("a duration must be positive")
        return text
    if isinstance(text, str):
        m = _DURATION.match(text)
        if m:
            seconds = int(m.group(1)) * _UNITS[m.group(2)]
            if seconds <= 0:
                raise ValueError("a duration must be positive")
            return seconds
    raise ValueError(f"{text!r} is not a duration like '180d', '12h', '30m', '45s' or '2w'")


def format_duration(seconds: int) -> str:
    """The shortest exact form of a duration: 15552000 -> '180d'."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def rfc3339(t: float) -> str:
    """UTC timestamp with second precision, e.g. 2026-11-26T21:46:36Z."""
    return datetime.fromtimestamp(int(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, now: float) -> int:
    """A point in time for filters: RFC 3339 date or date-time, or a duration ago ('7d')."""
    try:
        return int(now) - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 date/time (2026-01-31, 2026-01-31T12:00:00Z) "
            "nor a duration ago (7d, 12h)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())
