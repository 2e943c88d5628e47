"""ControlNet through the engine on the tiny models, on the CPU: the control image steers the result."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from inference.engine import Engine, EngineConfig
from inference.errors import GenerationCancelled, GenerationFailed, InvalidRequest
from inference.events import Cancelled, ControlImages, Done, JobEvent, Preview, Progress
from inference.models import ModelRegistry
from inference.pipelines import controlnet_cache_key, load_model
from inference.requests import ControlUnit, GenerationRequest
from tests.inference.conftest import CONTROL, CONTROL_SD2, CONTROL_SINGLE, CONTROL_XL, DEMO, TINY_XL
from tests.support.photos import encode, photo

PHOTO = encode(photo(160, 120, variant=1))
OTHER_PHOTO = encode(photo(160, 120, variant=2))


def req(*units: dict, kind: str = "txt2img", **overrides) -> GenerationRequest:
    values: dict = dict(model=DEMO, prompt="a castle", steps=3, width=64, height=64, seed=7, kind=kind,
                        controls=[{"model": CONTROL, "image": PHOTO, **unit} for unit in units])
    if kind == "img2img":
        values.update(init_image=PHOTO, strength=0.8)
    values.update(overrides)
    return GenerationRequest(**values)


async def run(engine: Engine, request: GenerationRequest) -> tuple[list[JobEvent], object]:
    events: list[JobEvent] = []
    result = await engine.submit(request, events.append)
    await asyncio.sleep(0)
    return events, result


def pixels(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.images[0].png)), dtype=np.int16)


def differ(a, b) -> bool:
    return bool(np.abs(pixels(a) - pixels(b)).mean() > 1.0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
async def test_the_control_image_changes_the_output(engine: Engine, kind: str) -> None:
    _, plain = await run(engine, req(kind=kind))
    events, controlled = await run(engine, req({}, kind=kind))
    _, other = await run(engine, req({"image": OTHER_PHOTO}, kind=kind))
    assert differ(controlled, plain)
    assert differ(controlled, other)  # the image, not merely the ControlNet's presence, steers it
    # the control image is shown: an event before the first step, and in the result
    control_event = next(e for e in events if isinstance(e, ControlImages))
    assert events.index(control_event) < events.index(next(e for e in events if isinstance(e, Progress)))
    [shown] = controlled.control_images
    assert (shown.unit, shown.model, shown.preprocessor, shown.width, shown.height) == (0, CONTROL, "canny", 64, 64)
    edges = np.asarray(Image.open(io.BytesIO(shown.png)))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) <= {0, 255} and edges.max() == 255
    assert control_event.images[0].png == shown.png
    assert 'ControlNet 0: "Module: canny, Model: demo-tiny-control, Weight: 1' in controlled.images[0].parameters


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
async def test_scale_zero_equals_no_controlnet(engine: Engine, kind: str) -> None:
    _, plain = await run(engine, req(kind=kind))
    _, zero = await run(engine, req({"scale": 0.0}, kind=kind))
    assert np.array_equal(pixels(zero), pixels(plain))
    # a guidance window that holds no step (3 steps: 0, 1/3, 2/3 all start before 0.9) is no ControlNet either
    _, late = await run(engine, req({"start": 0.9, "end": 1.0}, kind=kind))
    assert np.array_equal(pixels(late), pixels(plain))
    _, half = await run(engine, req({"end": 0.5}, kind=kind))  # the first of the three steps only
    _, full = await run(engine, req({}, kind=kind))
    assert differ(half, plain) and not np.array_equal(pixels(half), pixels(full))


@pytest.mark.timeout(120)
async def test_two_units_at_once(engine: Engine) -> None:
    first = {"image": PHOTO, "preprocessor": "canny", "low_threshold": 50, "high_threshold": 150}
    second = {"image": OTHER_PHOTO, "preprocessor": "softedge", "scale": 0.7, "start": 0.0, "end": 0.7}
    _, one = await run(engine, req(first))
    _, two = await run(engine, req(first, second))
    _, swapped_weight = await run(engine, req(first, {**second, "scale": 1.4}))
    assert differ(two, one) and differ(two, swapped_weight)
    assert [(c.unit, c.preprocessor) for c in two.control_images] == [(0, "canny"), (1, "softedge")]
    soft = np.asarray(Image.open(io.BytesIO(two.control_images[1].png)))
    assert len(np.unique(soft)) > 8  # soft edges are grey levels, not a binary map
    assert 'ControlNet 1: "Module: softedge' in two.images[0].parameters
    # two units of the same ControlNet share one module in the cache
    _, same = await run(engine, req(first, {**second, "preprocessor": "tile"}, kind="img2img"))
    assert same.images and [c.preprocessor for c in same.control_images] == ["canny", "tile"]
    assert sum(name.startswith("controlnet:") for name in engine.workers[0].cache.resident()) == 1


@pytest.mark.timeout(60)
async def test_a_controlnet_for_another_base_is_refused_before_the_job_runs(engine: Engine) -> None:
    for controlnet, model, named in ((CONTROL_SD2, DEMO, "SD 2.x"), (CONTROL_XL, DEMO, "SDXL"),
                                     (CONTROL, TINY_XL, "SD 1.x")):
        with pytest.raises(InvalidRequest) as caught:
            engine.submit(req({"model": controlnet}, model=model))
        assert caught.value.code == "controlnet_base_mismatch"
        assert controlnet in caught.value.message and model in caught.value.message and named in caught.value.message
    assert engine.queue_depth == 0 and engine.workers[0].cache.stats()["loads"] == 0
    with pytest.raises(InvalidRequest) as caught:
        engine.submit(req({"model": "no-such-controlnet"}))
    assert caught.value.code == "unknown_controlnet"


@pytest.mark.timeout(120)
async def test_controlnets_live_in_the_model_cache_pinned_while_used(registry: ModelRegistry) -> None:
    key = controlnet_cache_key(CONTROL)
    engine = Engine(registry, EngineConfig(preview_fps=0)).start()
    try:
        cache = engine.workers[0].cache
        pinned_during: list[set[str]] = []

        def on_event(event: JobEvent) -> None:
            if isinstance(event, Progress):
                pinned_during.append(cache.pinned())

        await engine.submit(req({}), on_event)
        assert pinned_during and all({DEMO, key} <= pins for pins in pinned_during)
        assert cache.pinned() == set() and key in cache.resident()
        model_bytes = sum(p.stat().st_size for p in registry.get(DEMO).weight_files())
        sizes = cache.stats()["bytes_device"]
        assert sizes > model_bytes  # the ControlNet's bytes are counted
    finally:
        await engine.aclose()

    # A budget that holds the model and the ControlNet, not two models: the ControlNet is evicted like any model.
    engine = Engine(registry, EngineConfig(preview_fps=0, device_budget_bytes=sizes)).start()
    try:
        cache = engine.workers[0].cache
        await engine.submit(req({}))
        await engine.submit(req(model="demo-b"))
        await engine.submit(req(model="demo-c"))
        assert key not in cache.resident() and cache.stats()["evictions"] >= 2
        _, result = await run(engine, req({}))  # and loaded again when wanted
        assert result.images and key in cache.resident()
    finally:
        await engine.aclose()

    # A budget with no room for the ControlNet beside its pinned model fails that job alone.
    engine = Engine(registry, EngineConfig(preview_fps=0, device_budget_bytes=sizes - 1)).start()
    try:
        with pytest.raises(GenerationFailed) as caught:
            await engine.submit(req({}))
        assert caught.value.code == "model_cache_full"
        _, result = await run(engine, req())
        assert result.images
    finally:
        await engine.aclose()


@pytest.mark.timeout(120)
async def test_previews_and_cancel_work_as_for_any_job(engine: Engine) -> None:
    events, _ = await run(engine, req({}, steps=4))
    assert [e.step for e in events if isinstance(e, Preview)] == [1, 2, 3, 4]
    assert isinstance(events[-1], Done)

    events = []
    job = None

    def on_event(event: JobEvent) -> None:
        events.append(event)
        if isinstance(event, Progress) and event.step == 2:
            job.cancel()

    job = engine.submit(req({}, steps=60), on_event)
    with pytest.raises(GenerationCancelled):
        await job
    await asyncio.sleep(0)
    stop = next(e for e in events if isinstance(e, Cancelled))
    assert stop.step - stop.requested_at_step <= 1 and stop.step < 60


@pytest.mark.timeout(120)
async def test_preprocessing_and_init_latents_are_cached_by_content(engine: Engine) -> None:
    _, first = await run(engine, req({}, kind="img2img"))
    stats = engine.stats()["control_cache"]
    assert stats["entries"] == 2  # the decoded photo and its canny image
    # the same photo, sent again as new bytes objects: every cache hits, nothing is decoded
    same_bytes = bytes(bytearray(PHOTO))
    _, again = await run(engine, req({"image": same_bytes}, kind="img2img", init_image=same_bytes, seed=8))
    assert engine.stats()["control_cache"]["hits"] >= stats["hits"] + 1
    assert engine.stats()["control_cache"]["entries"] == 2
    assert engine.stats()["latent_cache"]["hits"] >= 1
    # a second style of the same photo: a new control image, but the photo is not decoded again
    before = engine.stats()["control_cache"]
    await run(engine, req({"preprocessor": "softedge"}, kind="img2img"))
    after = engine.stats()["control_cache"]
    assert after["entries"] == before["entries"] + 1 and after["hits"] == before["hits"] + 1
    # other thresholds are another control image
    await run(engine, req({"low_threshold": 10, "high_threshold": 20}, kind="img2img"))
    assert engine.stats()["control_cache"]["entries"] == after["entries"] + 1
    assert first.timings["control_s"] > 0


@pytest.mark.timeout(120)
async def test_a_single_file_controlnet_gives_the_same_image_as_its_folder(engine: Engine) -> None:
    _, folder = await run(engine, req({}))
    _, single = await run(engine, req({"model": CONTROL_SINGLE}))
    assert np.array_equal(pixels(folder), pixels(single))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
async def test_sdxl_controlnet(engine: Engine, kind: str) -> None:
    base = dict(model=TINY_XL, kind=kind)
    _, plain = await run(engine, req(**base))
    _, controlled = await run(engine, req({"model": CONTROL_XL}, **base))
    _, zero = await run(engine, req({"model": CONTROL_XL, "scale": 0.0}, **base))
    assert differ(controlled, plain)
    assert np.array_equal(pixels(zero), pixels(plain))


@pytest.mark.timeout(60)
async def test_a_stored_request_runs_again_the_same(engine: Engine) -> None:
    """A job is stored as JSON with its images as blobs, and rebuilt after a restart."""
    request = engine.validate(req({"scale": 0.8, "preprocessor": "softedge"}))
    stored = json.dumps({"seed": request.seed, "controls": [unit.settings() for unit in request.controls]})
    loaded = json.loads(stored)
    again = req(seed=loaded["seed"], controls=[{**unit, "image": PHOTO} for unit in loaded["controls"]])
    assert again == request and isinstance(again.controls[0], ControlUnit)
    _, one = await run(engine, request)
    _, two = await run(engine, again)
    assert one.images[0].png == two.images[0].png


@pytest.mark.timeout(120)
async def test_out_of_memory_keeps_the_jobs_controlnet_for_the_retry(registry: ModelRegistry) -> None:
    failures = {"left": 0}

    def loader(spec, dtype):
        loaded = load_model(spec, dtype=dtype)
        original = loaded.txt2img.unet.forward

        def forward(*args, **kwargs):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(*args, **kwargs)

        loaded.txt2img.unet.forward = forward
        return loaded

    engine = Engine(registry, EngineConfig(preview_fps=0), loader=loader).start()
    try:
        cache = engine.workers[0].cache
        await engine.submit(req(model="demo-b"))  # something else resident, unpinned
        failures["left"] = 1
        loads = cache.stats()["loads"]
        _, result = await run(engine, req({}))
        assert result.images and engine.stats()["jobs"]["oom_retries"] == 1
        assert "demo-b" not in cache.resident()  # evicted to make room
        assert {DEMO, controlnet_cache_key(CONTROL)} <= set(cache.resident())
        assert cache.stats()["loads"] == loads + 2  # the model and its ControlNet, each loaded once
    finally:
        await engine.aclose()
