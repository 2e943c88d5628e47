"""Fixed-window rate limiting over the cache's counters (Redis or in-process)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.cache import Cache


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    retry_after_secs: int


class RateLimiter:
    """Counts events per key in windows of fixed length."""

    def __init__(self, cache: Cache):
        self._cache = cache

    async def hit(self, key: str, limit: int, window_secs: int) -> Decision:
        """Count one event; allowed while the window holds at most ``limit`` events."""
        count = await self._cache.incr(f"rl:{key}", 1, ttl_secs=window_secs)
        if count <= limit:
            return Decision(True, count, 0)
        return Decision(False, count, await self._retry_after(key, window_secs))

    async def peek(self, key: str, limit: int, window_secs: int) -> Decision:
        """Would one more event be refused? Counts nothing."""
        raw = await self._cache.get(f"rl:{key}")
        count = int(raw) if raw is not None else 0
        if count < limit:
            return Decision(True, count, 0)
        return Decision(False, count, await self._retry_after(key, window_secs))

    async def reset(self, key: str) -> None:
        await self._cache.delete(f"rl:{key}")

    async def _retry_after(self, key: str, window_secs: int) -> int:
        remaining = await self._cache.ttl(f"rl:{key}")
        return max(1, math.ceil(remaining if remaining is not None else window_secs))
