"""The engine's numbers reach Prometheus text format."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from inference.engine import Engine
from inference.metrics import register_engine_metrics
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO


@pytest.mark.timeout(60)
async def test_metrics_export(engine: Engine) -> None:
    registry = CollectorRegistry()
    register_engine_metrics(engine, registry)
    await engine.submit(GenerationRequest(model=DEMO, prompt="a cat", steps=2, width=64, height=64, seed=1))
    text = generate_latest(registry).decode()
    assert 'va_inference_jobs_total{outcome="done"} 1.0' in text
    assert 'va_inference_model_cache_misses_total{device="cpu"} 1.0' in text
    assert 'va_inference_steps_total 2.0' in text
    assert "va_inference_model_load_seconds_total" in text
    assert 'va_inference_tensor_cache_misses_total{cache="text_cache"} 1.0' in text
