"""Per-token rate limits: the generic cell rate algorithm (GCRA), O(1) state per token.

A limit of N per period lets a token send N requests at once and then one every period/N;
a refused request learns how many seconds to wait (``Retry-After``, RFC 9110 section 10.2.3).

One process on SQLite keeps the state in memory. Replicas on PostgreSQL and ``issuer serve
--workers N`` share it in the database (:mod:`issuer.store.ratelimits`), so a limit holds for
the token across all of them, not once per process.
"""

from __future__ import annotations

import math
import threading
from typing import NoReturn

from issuer.core.clock import Clock
from issuer.core.config import RateLimit
from issuer.core.errors import RateLimited
from issuer.store import ratelimits
from issuer.store.audit import AuditStore


class RateLimiter:
    """Theoretical arrival times per key: in memory (guarded by one lock, the service is
    threaded), or in ``shared``, the database every replica uses."""

    def __init__(self, clock: Clock, shared: AuditStore | None = None) -> None:
        self.clock = clock
        self.shared = shared
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, key: str, limit: RateLimit | None) -> None:
        """Count one request for ``key``; raise RateLimited when over ``limit``."""
        if limit is None:
            return
        interval = limit.period / limit.count
        burst = limit.period - interval  # how far ahead of now the schedule may run
        if self.shared is not None:
            wait_ms = ratelimits.take(self.shared, key, int(self.clock.now() * 1000),
                                      math.ceil(interval * 1000), int(burst * 1000))
            if wait_ms:
                self._refuse(key, limit, max(1, math.ceil(wait_ms / 1000)))
            return
        with self._lock:
            now = self.clock.now()
            tat = max(self._tat.get(key, now), now)
            if tat - now > burst:
                self._refuse(key, limit, max(1, math.ceil(tat - now - burst)))
            self._tat[key] = tat + interval

    @staticmethod
    def _refuse(key: str, limit: RateLimit, wait: int) -> NoReturn:
        raise RateLimited(f"rate limit {limit} exceeded for token '{key}'; retry in {wait}s",
                          retry_after=wait)
