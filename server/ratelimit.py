"""Fixed-window rate limiting over counters in a store of their own (Redis or in-process).

The limiter's store is never the page cache: in-process, a flood of cheap cached pages would
evict the counters and reset every throttle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.cache import Cache
from server.errors import RateLimited

# The in-process counters' bound: far above what the throttles themselves let one client create.
LIMITER_MEMORY_ENTRIES = 100_000
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 60 * 60


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    retry_after_secs: int


def wait_in_words(seconds: int) -> str:
    """When to try again, as people say it: "in 40 seconds", "in 11 minutes", "in 2 hours" (rounded up)."""
    seconds = max(1, int(seconds))
    if seconds < SECONDS_PER_MINUTE:
        amount, unit = seconds, "second"
    elif seconds < SECONDS_PER_HOUR:
        amount, unit = math.ceil(seconds / SECONDS_PER_MINUTE), "minute"
    else:
        amount, unit = math.ceil(seconds / SECONDS_PER_HOUR), "hour"
    return f"in {amount} {unit}{'' if amount == 1 else 's'}"


def refusal(what: str, decision: Decision) -> RateLimited:
    """The error for a refused decision: ``what`` happened too often, and when to try again, once, in words."""
    return RateLimited(f"{what}; try again {wait_in_words(decision.retry_after_secs)}.",
                       retry_after_secs=decision.retry_after_secs)


class RateLimiter:
    """Counts events per key in windows of fixed length."""

    def __init__(self, store: Cache):
        self._cache = store

    async def hit(self, key: str, limit: int, window_secs: int) -> Decision:
        """Count one event; allowed while the window holds at most ``limit`` events."""
        count = await self._cache.incr(f"rl:{key}", 1, ttl_secs=window_secs)
        if count <= limit:
            return Decision(True, count, 0)
        return Decision(False, count, await self._retry_after(key, window_secs))

    async def require(self, key: str, limit: int, window_secs: int, what: str) -> None:
        """Count one event, or raise ``RateLimited`` saying ``what`` was too often and when to try again."""
        decision = await self.hit(key, limit, window_secs)
        if not decision.allowed:
            raise refusal(what, decision)

    async def reset(self, key: str) -> None:
        await self._cache.delete(f"rl:{key}")

    async def _retry_after(self, key: str, window_secs: int) -> int:
        remaining = await self._cache.ttl(f"rl:{key}")
        return max(1, math.ceil(remaining if remaining is not None else window_secs))
