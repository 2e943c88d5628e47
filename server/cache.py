"""Cache-aside storage: Redis when configured, an in-process twin otherwise.

Both keep bytes under string keys with a time to live and pass the same tests.
Values are JSON through ``get_json``/``set_json``; ``CacheAside`` does the
read-through-then-fill that cached queries use (model hub, gallery).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, TypeVar

import redis.asyncio as redis

from server.redis_client import UNAVAILABLE_ERRORS
from server.waiters import settle

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bounds the in-process twin so a laptop process cannot grow without limit: in entries and in bytes
# (keys and values), since a few large pages weigh more than thousands of counters.
DEFAULT_MEMORY_CACHE_ENTRIES = 10_000
DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024
# Keys are built from request values (gallery filters, search text); longer ones are stored under a digest,
# so a client cannot make one key cost kilobytes (memory here, and in Redis).
MAX_KEY_CHARS = 200
KEY_HEAD_CHARS = 100
# Book-keeping per in-process entry (tuple, dict slot, expiry), counted with the key and value.
ENTRY_OVERHEAD_BYTES = 100
# After Redis fails to answer, the cache serves from process memory this long before it asks Redis again,
# so an outage costs one slow call per interval, not one per request.
REDIS_RETRY_AFTER_SECS = 2.0
# Window counters (rate limits): INCRBY each key by ARGV[2i-1] and start its window (ARGV[2i] ms) in the same
# script, NX so that the window starts with the first increment and later ones do not extend it; the counts come
# back in KEYS' order. One script rather than a MULTI/EXEC pipeline, which cost redis-py (and the loop) about twice
# the CPU; and the counters bumped in one turn of the loop (several sockets' chat messages) share one call.
INCR_WINDOWS = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCRBY', key, ARGV[2 * i - 1])
  redis.call('PEXPIRE', key, ARGV[2 * i], 'NX')
end
return counts
"""


def bounded_key(key: str) -> str:
    """``key`` itself, or, over ``MAX_KEY_CHARS``, its head and the sha256 of the whole (still unique)."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    return f"{key[:KEY_HEAD_CHARS]}#{hashlib.sha256(key.encode()).hexdigest()}"


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_secs: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int: ...
    async def ttl(self, key: str) -> float | None: ...


class MemoryCache:
    """An LRU dictionary with per-key expiry, bounded in entries and bytes, for the single-process mode."""

    def __init__(self, max_entries: int = DEFAULT_MEMORY_CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = DEFAULT_MEMORY_CACHE_BYTES):
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock

    @property
    def size_bytes(self) -> int:
        """What the entries weigh: keys, values and book-keeping."""
        return self._bytes

    @staticmethod
    def _weight(key: str, value: bytes) -> int:
        return len(key) + len(value) + ENTRY_OVERHEAD_BYTES

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= self._weight(key, entry[1])

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at is not None and expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl_secs: float | None) -> None:
        expires_at = None if ttl_secs is None else self._clock() + ttl_secs
        self._drop(key)
        self._entries[key] = (expires_at, value)
        self._bytes += self._weight(key, value)
        while len(self._entries) > self._max_entries or (self._bytes > self._max_bytes and len(self._entries) > 1):
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def get(self, key: str) -> bytes | None:
        return self._live(bounded_key(key))

    async def set(self, key: str, value: bytes, ttl_secs: float) -> None:
        self._store(bounded_key(key), value, ttl_secs)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._drop(bounded_key(key))

    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int:
        key = bounded_key(key)
        current = self._live(key)
        if current is None:
            value = amount
            self._store(key, str(value).encode(), ttl_secs)
        else:
            value = int(current) + amount
            expires_at, _ = self._entries[key]
            self._store_keeping_expiry(key, expires_at, str(value).encode())
        return value

    def _store_keeping_expiry(self, key: str, expires_at: float | None, value: bytes) -> None:
        self._drop(key)
        self._entries[key] = (expires_at, value)
        self._bytes += self._weight(key, value)

    async def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None when it has no expiry or does not exist."""
        key = bounded_key(key)
        if self._live(key) is None:
            return None
        expires_at, _ = self._entries[key]
        return None if expires_at is None else max(0.0, expires_at - self._clock())


@dataclass(slots=True)
class _WindowBump:
    """One caller's bump of a window counter, waiting for this turn's call."""

    key: str
    amount: int
    window_ms: int
    future: asyncio.Future[int]


class RedisCache:
    """The same interface over Redis, every key under the deployment's prefix and namespace.

    While Redis does not answer, this process is served by a ``MemoryCache`` of its own (fail over, not
    fail): cached reads go to the database, rate limits count per process, principals are looked up in
    the database. Deletes and generation bumps (increments without expiry) that could not reach Redis
    are replayed once it answers, so nothing cached before the outage (a revoked credential's principal,
    a gallery page) outlives a write made during it.
    """

    def __init__(self, client: redis.Redis, prefix: str, namespace: str = "cache:", *,
                 retry_after_secs: float = REDIS_RETRY_AFTER_SECS):
        self._redis = client
        self._prefix = prefix + namespace
        self._local = MemoryCache()
        self._retry_after = retry_after_secs
        self._down_until = 0.0
        self._undeleted: set[str] = set()
        self._unbumped: Counter[str] = Counter()
        self._incr_windows = client.register_script(INCR_WINDOWS)
        self._window_bumps: list[_WindowBump] = []
        self._bumping: set[asyncio.Task] = set()  # the loop holds tasks weakly

    def _full(self, key: str) -> str:
        return self._prefix + bounded_key(key)

    async def _either(self, remote: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._down_until:
            return await local()
        try:
            if self._undeleted or self._unbumped:
                await self._replay()
            return await remote()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("Redis does not answer (%s): the cache serves this process from memory for %.0f s",
                        exc, self._retry_after)
            self._down_until = time.monotonic() + self._retry_after
            return await local()

    async def _replay(self) -> None:
        undeleted, unbumped = list(self._undeleted), dict(self._unbumped)
        async with self._redis.pipeline(transaction=False) as pipe:
            if undeleted:
                pipe.delete(*(self._full(key) for key in undeleted))
            for key, amount in unbumped.items():
                pipe.incrby(self._full(key), amount)
            await pipe.execute()
        self._undeleted.difference_update(undeleted)
        self._unbumped.subtract(unbumped)
        self._unbumped = +self._unbumped  # drop the zeros
        log.info("Redis answers again: replayed %d deletes and %d generation bumps", len(undeleted), len(unbumped))

    async def get(self, key: str) -> bytes | None:
        return await self._either(lambda: self._redis.get(self._full(key)), lambda: self._local.get(key))

    async def set(self, key: str, value: bytes, ttl_secs: float) -> None:
        await self._either(lambda: self._redis.set(self._full(key), value, px=max(1, int(ttl_secs * 1000))),
                           lambda: self._local.set(key, value, ttl_secs))

    async def delete(self, *keys: str) -> None:
        if not keys:
            return

        async def local() -> None:
            await self._local.delete(*keys)
            self._undeleted.update(keys)

        await self._either(lambda: self._redis.delete(*(self._full(key) for key in keys)), local)

    async def incr(self, key: str, amount: int = 1, ttl_secs: float | None = None) -> int:
        full_key = self._full(key)

        async def remote() -> int:
            if ttl_secs is None:
                return int(await self._redis.incrby(full_key, amount))
            return await self._bump_window(full_key, amount, max(1, int(ttl_secs * 1000)))

        async def local() -> int:
            if ttl_secs is None:  # a generation number: every process must see the bump once Redis is back
                self._unbumped[key] += amount
            return await self._local.incr(key, amount, ttl_secs)

        return await self._either(remote, local)

    def _bump_window(self, key: str, amount: int, window_ms: int) -> asyncio.Future[int]:
        """The key's count once bumped, together with every other window counter bumped in this turn."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._window_bumps.append(_WindowBump(key, amount, window_ms, future))
        if len(self._window_bumps) == 1:
            sending = asyncio.ensure_future(self._send_window_bumps())
            self._bumping.add(sending)
            sending.add_done_callback(self._bumping.discard)
        return future

    async def _send_window_bumps(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's bumps join the call
        bumps, self._window_bumps = self._window_bumps, []
        try:
            counts = await self._incr_windows(keys=[bump.key for bump in bumps],
                                              args=[value for bump in bumps for value in (bump.amount, bump.window_ms)])
        except asyncio.CancelledError:
            for bump in bumps:
                bump.future.cancel()
            raise
        except Exception as exc:  # each caller meets it (and fails over to memory, as for any call)
            for bump in bumps:
                settle(bump.future, failure=exc)
            return
        for bump, count in zip(bumps, counts):
            settle(bump.future, int(count))

    async def ttl(self, key: str) -> float | None:
        async def remote() -> float | None:
            millis = await self._redis.pttl(self._full(key))
            return None if millis < 0 else millis / 1000

        return await self._either(remote, lambda: self._local.ttl(key))


async def get_json(cache: Cache, key: str) -> Any | None:
    raw = await cache.get(key)
    return None if raw is None else json.loads(raw)


async def set_json(cache: Cache, key: str, value: Any, ttl_secs: float) -> None:
    await cache.set(key, json.dumps(value, separators=(",", ":")).encode(), ttl_secs)


class CacheAside:
    """Cache-aside over JSON bytes with a TTL (0 turns caching off, for comparison).

    Concurrent misses of one key in this process share one load, so an expiry under load costs one
    query, not one per waiting request. A family of keys (every page of a listing) carries a
    generation number: one ``bump`` (an ``INCR``, seen by every process) invalidates them all.
    """

    def __init__(self, cache: Cache, ttl_secs: float):
        self._cache = cache
        self._ttl = ttl_secs
        self._inflight: dict[str, asyncio.Future] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> bytes | None:
        """The cached bytes, or ``load()``'s value as JSON bytes, stored; None when it finds nothing (not cached)."""
        if self._ttl > 0:
            raw = await self._cache.get(key)
            if raw is not None:
                return raw
        inflight = self._inflight.get(key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            raw = await self._fill(key, load)
            future.set_result(raw)
            return raw
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it; nobody waiting is not an error
            raise
        finally:
            del self._inflight[key]

    async def _fill(self, key: str, load: Callable[[], Awaitable[Any]]) -> bytes | None:
        value = await load()
        if value is None:
            return None
        raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        if self._ttl > 0:
            await self._cache.set(key, raw, self._ttl)
        return raw

    async def generation(self, name: str) -> int:
        raw = await self._cache.get(name) if self._ttl > 0 else None
        return int(raw) if raw is not None else 0

    async def bump(self, name: str) -> None:
        await self._cache.incr(name)

    async def delete(self, *keys: str) -> None:
        await self._cache.delete(*keys)
