"""Cache-aside storage: Redis when configured, an in-process twin otherwise.

Both keep bytes under string keys with a time to live and pass the same tests.
Values are JSON through ``get_json``/``set_json``; ``cached`` does the
read-through-then-fill that every cached query uses.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Protocol

import redis.asyncio as redis

# Bounds the in-process twin so a laptop process cannot grow without limit.
DEFAULT_MEMORY_CACHE_ENTRIES = 10_000


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_secs: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int: ...
    async def ttl(self, key: str) -> float | None: ...


class MemoryCache:
    """An LRU dictionary with per-key expiry, for the single-process mode."""

    def __init__(self, max_entries: int = DEFAULT_MEMORY_CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic):
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at is not None and expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl_secs: float | None) -> None:
        expires_at = None if ttl_secs is None else self._clock() + ttl_secs
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl_secs: float) -> None:
        self._store(key, value, ttl_secs)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int:
        current = self._live(key)
        if current is None:
            value = amount
            self._store(key, str(value).encode(), ttl_secs)
        else:
            value = int(current) + amount
            expires_at, _ = self._entries[key]
            self._entries[key] = (expires_at, str(value).encode())
        return value

    async def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None when it has no expiry or does not exist."""
        if self._live(key) is None:
            return None
        expires_at, _ = self._entries[key]
        return None if expires_at is None else max(0.0, expires_at - self._clock())


class RedisCache:
    """The same interface over Redis, every key under the deployment's prefix."""

    def __init__(self, client: redis.Redis, prefix: str):
        self._redis = client
        self._prefix = prefix + "cache:"

    async def get(self, key: str) -> bytes | None:
        return await self._redis.get(self._prefix + key)

    async def set(self, key: str, value: bytes, ttl_secs: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_secs * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._prefix + key for key in keys))

    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int:
        full_key = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(full_key, amount)
            if ttl_secs is not None:
                # NX: the window starts with the first increment and is not extended by later ones.
                pipe.pexpire(full_key, max(1, int(ttl_secs * 1000)), nx=True)
            results = await pipe.execute()
        return int(results[0])

    async def ttl(self, key: str) -> float | None:
        millis = await self._redis.pttl(self._prefix + key)
        return None if millis < 0 else millis / 1000


async def get_json(cache: Cache, key: str) -> Any | None:
    raw = await cache.get(key)
    return None if raw is None else json.loads(raw)


async def set_json(cache: Cache, key: str, value: Any, ttl_secs: float) -> None:
    await cache.set(key, json.dumps(value, separators=(",", ":")).encode(), ttl_secs)


async def cached(cache: Cache, key: str, ttl_secs: float, load: Callable[[], Awaitable[Any]]) -> Any:
    """Cache-aside: return the cached JSON value, or load it, store it and return it."""
    value = await get_json(cache, key)
    if value is None:
        value = await load()
        await set_json(cache, key, value, ttl_secs)
    return value
