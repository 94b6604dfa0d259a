"""Per-key sliding-window rate limiting for chat users (in memory, per process)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from core.errors import RateLimited


class RateLimiter:
    """At most ``per_minute`` hits per key in any 60-second window."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str) -> None:
        """Record one request for ``key`` or raise :class:`RateLimited`."""
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= 60.0:
            hits.popleft()
        if len(hits) >= self.per_minute:
            raise RateLimited(60.0 - (now - hits[0]))
        hits.append(now)
        if len(self._hits) > 10_000:  # forget idle users so memory stays bounded
            for k in [k for k, v in self._hits.items() if not v or now - v[-1] >= 60.0]:
                del self._hits[k]
