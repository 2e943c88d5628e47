"""The byte-budget model cache: never over budget, never evicts a pinned model, counts right."""

from __future__ import annotations

import asyncio
import random

import pytest

from inference.engine import Engine, EngineConfig
from inference.errors import CacheFull
from inference.model_cache import ModelCache
from inference.models import ModelRegistry
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO, EXTRA_MODELS

MB = 1024 * 1024


class FakeModel:
    def __init__(self, name: str, size: int) -> None:
        self.name, self.nbytes, self.device = name, size, "cpu"


def make_cache(sizes: dict[str, int], device_budget: int, host_budget: int) -> tuple[ModelCache, list[str]]:
    loads: list[str] = []

    def load(name: str) -> FakeModel:
        loads.append(name)
        return FakeModel(name, sizes[name])

    def move(model: FakeModel, where: str) -> None:
        model.device = where

    cache = ModelCache(load, device="cuda:fake", device_budget_bytes=device_budget, host_budget_bytes=host_budget,
                       size_of=lambda m: m.nbytes, move=move, collect_garbage=False)
    return cache, loads


def test_hit_miss_and_load_counts() -> None:
    cache, loads = make_cache({"a": 10 * MB, "b": 10 * MB}, 25 * MB, 0)
    for name in ["a", "a", "b", "a", "b"]:
        with cache.use(name) as model:
            assert model.name == name and model.device == "cuda:fake"
    stats = cache.stats()
    assert (stats["misses"], stats["hits"], stats["evictions"], stats["loads"]) == (2, 3, 0, 2)
    assert loads == ["a", "b"]
    assert stats["bytes_device"] == 20 * MB and stats["load_seconds"] >= 0


def test_eviction_demotes_to_host_before_dropping() -> None:
    cache, loads = make_cache({"a": 10 * MB, "b": 10 * MB, "c": 10 * MB}, 15 * MB, 15 * MB)
    with cache.use("a") as a:
        pass
    with cache.use("b"):
        pass
    assert cache.resident() == {"a": "host", "b": "device"}
    assert a.device == "cpu"  # demoted, not dropped
    with cache.use("a") as a:  # a host hit: promoted, no reload
        assert a.device == "cuda:fake"
    assert loads == ["a", "b"]
    assert cache.stats()["hits_host"] == 1 and cache.stats()["promotions"] == 1
    with cache.use("c"):
        pass
    # a went to the host tier, which had to drop b (LRU there) to make room
    assert cache.resident() == {"a": "host", "c": "device"}
    assert cache.stats()["evictions"] == 1 and cache.stats()["demotions"] == 3


def test_pinned_model_is_never_evicted_and_budget_holds() -> None:
    cache, _ = make_cache({"a": 10 * MB, "b": 10 * MB}, 15 * MB, 0)
    with cache.use("a"):
        with pytest.raises(CacheFull, match="pinned"):
            with cache.use("b"):
                pass
        assert cache.resident() == {"a": "device"}
    assert cache.stats()["bytes_device"] <= 15 * MB
    with cache.use("b"):  # unpinned now, so a can go
        pass
    assert cache.resident() == {"b": "device"}


def test_model_larger_than_the_budget_fails_alone() -> None:
    cache, _ = make_cache({"big": 50 * MB, "a": 10 * MB}, 40 * MB, 100 * MB)
    with pytest.raises(CacheFull, match="budget"):
        with cache.use("big"):
            pass
    with cache.use("a"):
        pass
    assert cache.resident() == {"a": "device"}


def test_random_switching_never_exceeds_either_budget() -> None:
    rng = random.Random(5)
    sizes = {f"m{i}": rng.randint(5, 20) * MB for i in range(8)}
    device_budget, host_budget = 40 * MB, 30 * MB
    cache, _ = make_cache(sizes, device_budget, host_budget)
    held: list = []
    for _ in range(400):
        name = rng.choice(list(sizes))
        ctx = cache.use(name)
        try:
            ctx.__enter__()
        except CacheFull:
            assert sum(sizes[n] for n in cache.pinned()) + sizes[name] > device_budget
        else:
            held.append(ctx)
        while held and (len(held) > 2 or rng.random() < 0.5):
            held.pop(0).__exit__(None, None, None)
        assert cache.bytes_in("device") <= device_budget
        assert cache.bytes_in("host") <= host_budget
        assert all(cache.resident().get(n) == "device" for n in cache.pinned())
    stats = cache.stats()
    assert stats["peak_bytes_device"] <= device_budget and stats["peak_bytes_host"] <= host_budget
    assert stats["hits"] + stats["misses"] == 400
    assert stats["evictions"] > 0 and stats["demotions"] > 0


@pytest.mark.timeout(120)
async def test_switching_between_more_real_models_than_fit(registry: ModelRegistry) -> None:
    names = [DEMO, *EXTRA_MODELS]
    size = registry.get(DEMO).size_bytes  # the tiny model's weights are float32, as loaded
    engine = Engine(
        registry,
        EngineConfig(preview_fps=0, device_budget_bytes=int(size * 1.5), host_budget_bytes=int(size * 1.2)),
    ).start()
    try:
        order = [names[i % 4] for i in range(10)]  # a, b, c, d, a, b, ... -- never fits
        jobs = [engine.submit(GenerationRequest(model=n, prompt="a cat", steps=1, width=64, height=64, seed=1))
                for n in order]
        results = await asyncio.gather(*jobs)
        assert all(r.images for r in results)
        stats = engine.stats()["model_caches"][0]
        assert stats["peak_bytes_device"] <= stats["budget_device"]
        assert stats["peak_bytes_host"] <= stats["budget_host"]
        assert stats["hits"] + stats["misses"] == 10
        # one fits on the device and one in RAM: with round-robin over four, every use misses
        assert stats["misses"] == 10 and stats["evictions"] == 10 - 2 and stats["demotions"] == 9
        assert stats["models"] == 2
    finally:
        await engine.aclose()
