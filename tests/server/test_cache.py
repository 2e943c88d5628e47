"""The in-process and Redis twins pass the same tests."""

import asyncio
import json

import pytest
import redis.asyncio as redis

from server.cache import CacheAside, MemoryCache, RedisCache
from server.ratelimit import RateLimiter, wait_in_words


@pytest.fixture
async def cache(backend):
    if not backend.services:
        yield MemoryCache()
        return
    client = redis.from_url(backend.redis_url)
    yield RedisCache(client, backend.redis_prefix)
    await client.aclose()


async def test_set_get_delete(cache):
    assert await cache.get("k") is None
    await cache.set("k", b"v", ttl_secs=60)
    assert await cache.get("k") == b"v"
    await cache.delete("k", "missing")
    assert await cache.get("k") is None


async def test_values_expire(cache):
    await cache.set("short", b"v", ttl_secs=0.2)
    assert await cache.get("short") == b"v"
    await asyncio.sleep(0.35)
    assert await cache.get("short") is None


async def test_incr_window_is_not_extended(cache):
    assert await cache.incr("n", ttl_secs=0.4) == 1
    await asyncio.sleep(0.2)
    assert await cache.incr("n", ttl_secs=0.4) == 2
    remaining = await cache.ttl("n")
    assert remaining is not None and remaining < 0.25
    await asyncio.sleep(0.3)
    assert await cache.incr("n", ttl_secs=0.4) == 1


async def test_window_counters_bumped_together_count_each_bump_once(backend, cache):
    """Several sockets' messages in one turn: each caller gets its own count, every key its window, and with
    Redis the bumps of one turn are one call."""
    await cache.incr("w-warm", ttl_secs=30)  # Redis learns the script (a first call may take two)
    calls_before = await evalsha_calls(backend)
    counts = await asyncio.gather(*(cache.incr(f"w{i % 3}", ttl_secs=30) for i in range(9)),
                                  cache.incr("w-short", ttl_secs=0.3))
    assert sorted(counts[:9]) == [1, 1, 1, 2, 2, 2, 3, 3, 3] and counts[9] == 1
    assert [await cache.incr(f"w{i}", ttl_secs=30) for i in range(3)] == [4, 4, 4]
    remaining = await cache.ttl("w-short")
    assert remaining is not None and remaining <= 0.3
    await asyncio.sleep(0.4)
    assert await cache.incr("w-short", ttl_secs=0.3) == 1
    if backend.services:
        assert await evalsha_calls(backend) - calls_before == 5  # the gathered ten, three, and the last


async def evalsha_calls(backend) -> int:
    if not backend.services:
        return 0
    client = redis.from_url(backend.redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_cached_loads_once(cache):
    loads = []

    async def load():
        loads.append(1)
        return {"value": [1, 2, 3], "text": "中文 🎨"}

    pages = CacheAside(cache, 60)
    first = json.loads(await pages.get("q", load))
    second = json.loads(await pages.get("q", load))
    assert first == second == {"value": [1, 2, 3], "text": "中文 🎨"}
    assert len(loads) == 1


async def test_concurrent_misses_share_one_load_and_a_bump_invalidates_the_family(cache):
    loads = []

    async def load():
        loads.append(1)
        await asyncio.sleep(0.05)
        return {"n": len(loads)}

    pages = CacheAside(cache, 60)
    results = await asyncio.gather(*(pages.get("page:1", load) for _ in range(10)))
    assert len(set(results)) == 1 and len(loads) == 1
    before = await pages.generation("gen")
    await pages.bump("gen")
    assert await pages.generation("gen") == before + 1


async def test_rate_limiter_allows_then_refuses_with_retry_after(cache):
    limiter = RateLimiter(cache)
    decisions = [await limiter.hit("ip:1", limit=3, window_secs=30) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 1 <= decisions[-1].retry_after_secs <= 30
    assert (await limiter.hit("ip:2", limit=3, window_secs=30)).allowed
    await limiter.reset("ip:1")
    assert (await limiter.hit("ip:1", limit=3, window_secs=30)).count == 1


def test_waits_are_said_in_words():
    assert [wait_in_words(s) for s in (1, 40, 60, 632, 3600, 5000)] == [
        "in 1 second", "in 40 seconds", "in 1 minute", "in 11 minutes", "in 1 hour", "in 2 hours"]


async def test_long_keys_are_stored_under_a_digest(cache):
    long_a, long_b = "gallery:" + "a" * 5000, "gallery:" + "a" * 4999 + "b"
    await cache.set(long_a, b"A", ttl_secs=60)
    await cache.set(long_b, b"B", ttl_secs=60)
    assert await cache.get(long_a) == b"A" and await cache.get(long_b) == b"B"
    assert await cache.incr("n:" + "x" * 1000) == 1
    if isinstance(cache, MemoryCache):
        assert cache.size_bytes < 1000  # three short keys, not 11 KB of key text


def test_memory_cache_is_bounded():
    async def fill():
        small = MemoryCache(max_entries=3)
        for i in range(5):
            await small.set(f"k{i}", b"v", ttl_secs=60)
        return [await small.get(f"k{i}") for i in range(5)]

    assert asyncio.run(fill()) == [None, None, b"v", b"v", b"v"]


async def test_memory_cache_is_bounded_in_bytes():
    cache = MemoryCache(max_bytes=64 * 1024)
    for i in range(100):
        await cache.set(f"page:{i}", b"x" * 4096, ttl_secs=60)
    assert cache.size_bytes <= 64 * 1024
    assert await cache.get("page:99") is not None and await cache.get("page:0") is None
    await cache.delete(*(f"page:{i}" for i in range(100)))
    assert cache.size_bytes == 0
