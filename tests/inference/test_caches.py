"""The two small caches: text-encoder outputs and img2img init latents, hit and miss by the rules."""

from __future__ import annotations

import pytest

from inference.caches import TTLCache
from inference.engine import Engine
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO, png_bytes


def test_ttl_lru_bounds_and_counts() -> None:
    now = [0.0]
    cache: TTLCache = TTLCache(2, ttl_s=10, max_bytes=10_000, size_of=lambda v: 1, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 11.0
    assert cache.get("a") is None  # expired
    assert cache.stats() == {"hits": 2, "misses": 2, "entries": 1, "bytes": 1, "evictions": 1, "expirations": 1}


def test_byte_bound() -> None:
    cache: TTLCache = TTLCache(100, max_bytes=10, size_of=len)
    cache.put("a", "x" * 6)
    cache.put("b", "y" * 6)
    assert len(cache) == 1 and cache.bytes == 6
    cache.put("huge", "z" * 11)  # bigger than the whole cache: not stored
    assert cache.get("huge") is None and cache.get("b") == "y" * 6


def base(**overrides) -> GenerationRequest:
    values = dict(model=DEMO, prompt="a cat", negative_prompt="blurry", steps=2, width=64, height=64, seed=1)
    values.update(overrides)
    return GenerationRequest(**values)


@pytest.mark.timeout(60)
async def test_text_encoder_cache_rules(engine: Engine) -> None:
    cache = engine.text_cache
    await engine.submit(base())
    assert (cache.hits, cache.misses) == (0, 1)
    # steps, guidance, seed, sampler and size do not change the text encoding
    await engine.submit(base(steps=3, guidance=4.0, seed=9, sampler="DDIM", width=72))
    assert (cache.hits, cache.misses) == (1, 1)
    await engine.submit(base(prompt="a dog"))
    await engine.submit(base(negative_prompt="ugly"))
    await engine.submit(base(clip_skip=2))
    await engine.submit(base(model="demo-b"))
    assert (cache.hits, cache.misses) == (1, 5)


@pytest.mark.timeout(60)
async def test_init_latent_cache_rules(engine: Engine) -> None:
    cache = engine.latent_cache
    image = png_bytes(64, 64, (10, 200, 30))
    i2i = dict(kind="img2img", init_image=image, strength=0.6)
    await engine.submit(base(**i2i))
    assert (cache.hits, cache.misses) == (0, 1)
    # prompt, steps, guidance and strength reuse the init latent
    await engine.submit(base(**i2i, prompt="a dog", steps=3, guidance=3.0))
    await engine.submit(base(**{**i2i, "strength": 0.9}))
    assert (cache.hits, cache.misses) == (2, 1)
    # a new size or a new image does not
    await engine.submit(base(**i2i, width=128))
    await engine.submit(base(**{**i2i, "init_image": png_bytes(64, 64, (11, 200, 30))}))
    assert (cache.hits, cache.misses) == (2, 3)


@pytest.mark.timeout(60)
async def test_cached_and_uncached_give_the_same_bytes(engine: Engine) -> None:
    i2i = dict(kind="img2img", init_image=png_bytes(), strength=0.7, prompt="same")
    first = await engine.submit(base(**i2i))
    second = await engine.submit(base(**i2i))
    assert engine.latent_cache.hits >= 1 and engine.text_cache.hits >= 1
    assert first.images[0].png == second.images[0].png
