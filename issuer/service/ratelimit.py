"""Per-token rate limits: the generic cell rate algorithm (GCRA), O(1) state per token.

A limit of N per period lets a token send N requests at once and then one every period/N;
a refused request learns how many seconds to wait (``Retry-After``, RFC 9110 section 10.2.3).
"""

from __future__ import annotations

import math
import threading

from issuer.core.clock import Clock
from issuer.core.config import RateLimit
from issuer.core.errors import RateLimited


class RateLimiter:
    """Theoretical arrival times per key, guarded by one lock (the service is threaded)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, key: str, limit: RateLimit | None) -> None:
        """Count one request for ``key``; raise RateLimited when over ``limit``."""
        if limit is None:
            return
        interval = limit.period / limit.count
        burst = limit.period - interval  # how far ahead of now the schedule may run
        with self._lock:
            now = self.clock.now()
            tat = max(self._tat.get(key, now), now)
            if tat - now > burst:
                wait = max(1, math.ceil(tat - now - burst))
                raise RateLimited(f"rate limit {limit} exceeded for token '{key}'; retry in "
                                  f"{wait}s", retry_after=wait)
            self._tat[key] = tat + interval
