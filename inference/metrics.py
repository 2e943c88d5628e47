"""Prometheus export of the engine's counters, read at scrape time.

A custom collector rather than module-level Counter objects: the engine keeps plain
numbers (cheap to update on the worker threads, easy to test), nothing registers at
import, and two engines in one test process never collide in a registry.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX = "va_inference"


class EngineCollector(Collector):
    """Yields the engine's `stats()` as metric families."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        stats = self.engine.stats()
        jobs = stats["jobs"]
        outcome = CounterMetricFamily(f"{PREFIX}_jobs", "Finished generation jobs by outcome", labels=["outcome"])
        for name in ("done", "failed", "cancelled"):
            outcome.add_metric([name], jobs[name])
        yield outcome
        yield CounterMetricFamily(f"{PREFIX}_oom_retries", "Jobs retried after a CUDA out-of-memory", value=jobs["oom_retries"])
        yield CounterMetricFamily(f"{PREFIX}_steps", "Denoising steps run", value=jobs["steps"])
        yield CounterMetricFamily(f"{PREFIX}_denoise_seconds", "Seconds spent denoising", value=jobs["denoise_seconds"])
        yield CounterMetricFamily(f"{PREFIX}_vae_upcasts", "Decodes redone in float32 after an overflow", value=jobs["vae_upcasts"])
        previews = CounterMetricFamily(f"{PREFIX}_previews", "Step previews by fate", labels=["fate"])
        previews.add_metric(["sent"], jobs["previews_sent"])
        previews.add_metric(["dropped"], jobs["previews_dropped"])
        yield previews
        yield GaugeMetricFamily(f"{PREFIX}_queue_depth", "Jobs waiting for a worker", value=stats["queue_depth"])

        small = {
            "hits": CounterMetricFamily(f"{PREFIX}_tensor_cache_hits", "Small tensor cache hits", labels=["cache"]),
            "misses": CounterMetricFamily(f"{PREFIX}_tensor_cache_misses", "Small tensor cache misses", labels=["cache"]),
            "bytes": GaugeMetricFamily(f"{PREFIX}_tensor_cache_bytes", "Bytes held by a small tensor cache", labels=["cache"]),
        }
        for cache in ("text_cache", "latent_cache", "control_cache"):
            for key, family in small.items():
                family.add_metric([cache], stats[cache][key])
        yield from small.values()

        caches = stats["model_caches"]
        hits = CounterMetricFamily(f"{PREFIX}_model_cache_hits", "Model cache hits", labels=["device", "tier"])
        misses = CounterMetricFamily(f"{PREFIX}_model_cache_misses", "Model cache misses (loads)", labels=["device"])
        evictions = CounterMetricFamily(f"{PREFIX}_model_cache_evictions", "Models dropped", labels=["device"])
        demotions = CounterMetricFamily(f"{PREFIX}_model_cache_demotions", "Models moved VRAM -> RAM", labels=["device"])
        load_s = CounterMetricFamily(f"{PREFIX}_model_load_seconds", "Seconds spent loading models", labels=["device"])
        resident = GaugeMetricFamily(f"{PREFIX}_model_cache_bytes", "Bytes of resident models", labels=["device", "tier"])
        budget = GaugeMetricFamily(f"{PREFIX}_model_cache_budget_bytes", "Byte budget", labels=["device", "tier"])
        for cache in caches:
            device = cache["device"]
            for tier in ("device", "host"):
                hits.add_metric([device, tier], cache[f"hits_{tier}"])
                resident.add_metric([device, tier], cache[f"bytes_{tier}"])
                budget.add_metric([device, tier], cache[f"budget_{tier}"])
            misses.add_metric([device], cache["misses"])
            evictions.add_metric([device], cache["evictions"])
            demotions.add_metric([device], cache["demotions"])
            load_s.add_metric([device], cache["load_seconds"])
        yield from (hits, misses, evictions, demotions, load_s, resident, budget)


def register_engine_metrics(engine: Any, registry: CollectorRegistry) -> EngineCollector:
    """Export `engine` through `registry` (the app's registry; tests pass their own)."""
    collector = EngineCollector(engine)
    registry.register(collector)
    return collector
