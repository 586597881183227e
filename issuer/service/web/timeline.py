"""The keys page's picture: each key's next / active / retired / revoked periods on one time
axis, laid out here and drawn as SVG by the page template (no script, no external image)."""

from __future__ import annotations

from dataclasses import dataclass

from issuer.core.clock import rfc3339
from issuer.keys.keystore import KeyInfo

WIDTH, LABEL, ROW, BAR = 760, 150, 28, 16
LABEL_WIDTH = 150  # an RFC 3339 time in the axis font


@dataclass(frozen=True)
class Segment:
    state: str
    x: float
    width: float
    title: str  # shown as the segment's tooltip: state and times


@dataclass(frozen=True)
class Row:
    kid: str
    y: int
    segments: list[Segment]


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    label: int
    rows: list[Row]
    now_x: float
    start: str | None  # the axis' first label, left out where it would run into "now"
    end: str


def periods(key: KeyInfo, now: int) -> list[tuple[str, int, int]]:
    """``(state, from, to)`` for each state the key has been in, in order."""
    ends = [t for t in (key.revoked_at, key.expired_at) if t is not None]
    stop = min(ends) if ends else now
    marks = [("next", key.published_at or key.created_at), ("active", key.activated_at),
             ("retired", key.retired_at)]
    known = [(state, t) for state, t in marks if t is not None and t <= stop]
    spans = [(state, start, following[1])
             for (state, start), following in zip(known, [*known[1:], ("", stop)])
             if start < following[1] or following[0] == ""]  # a key made active never was next
    if key.revoked_at is not None:
        spans.append(("revoked", key.revoked_at, now))
    elif key.expired_at is not None:
        spans.append(("expired", key.expired_at, now))
    return spans


def layout(keys: list[KeyInfo], now: int) -> Timeline:
    """Scale every key's periods to one axis from the first key's creation to a bit past now."""
    start = min((k.created_at for k in keys), default=now)
    end = now + max(1, (now - start) // 10)
    scale = (WIDTH - LABEL - 10) / max(1, end - start)

    def x(t: int) -> float:
        return round(LABEL + (t - start) * scale, 1)

    rows = []
    for i, key in enumerate(keys):
        segments = [Segment(state, x(a), max(2.0, round(x(b) - x(a), 1)),
                            f"{state}: {rfc3339(a)} to {'now' if b == now else rfc3339(b)}")
                    for state, a, b in periods(key, now)]
        rows.append(Row(key.kid, 20 + i * ROW, segments))
    now_x = x(now)
    return Timeline(WIDTH, 40 + len(keys) * ROW, LABEL, rows, now_x,
                    rfc3339(start) if now_x - LABEL > 2 * LABEL_WIDTH else None, rfc3339(now))
