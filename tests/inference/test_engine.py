"""The engine on the tiny model, on the CPU: sizes, previews, determinism, cancel, failures."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from inference.engine import Engine, EngineConfig, Job
from inference.errors import GenerationCancelled, GenerationFailed, InvalidRequest
from inference.inpaint import crop_box
from inference.events import Cancelled, Done, Failed, JobEvent, Preview, Progress, Started
from inference.models import ModelRegistry
from inference.pipelines import load_model
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO, png_bytes


def req(**overrides) -> GenerationRequest:
    values = dict(model=DEMO, prompt="a cat", steps=3, width=64, height=64, seed=7)
    values.update(overrides)
    return GenerationRequest(**values)


async def run(engine: Engine, request: GenerationRequest) -> tuple[list[JobEvent], object]:
    events: list[JobEvent] = []
    result = await engine.submit(request, events.append)
    await asyncio.sleep(0)  # let the Done callback that was posted with the result land
    return events, result


@pytest.mark.timeout(60)
async def test_txt2img_right_size_and_events_in_order(engine: Engine) -> None:
    events, result = await run(engine, req(width=96, height=64, steps=3))
    image = Image.open(io.BytesIO(result.images[0].png))
    assert image.format == "PNG" and image.size == (96, 64)
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], Done)
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]
    assert result.timings["denoise_s"] > 0 and result.timings["steps_per_s"] > 0


@pytest.mark.timeout(60)
async def test_png_carries_a1111_parameters(engine: Engine) -> None:
    _, result = await run(engine, req(prompt="a red fox", negative_prompt="blurry", guidance=6.5, sampler="DDIM"))
    text = Image.open(io.BytesIO(result.images[0].png)).text["parameters"]
    lines = text.split("\n")
    assert lines[0] == "a red fox"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith("Steps: 3, Sampler: DDIM, CFG scale: 6.5, Seed: 7, Size: 64x64, Model hash: ")
    assert lines[2].endswith(f"Model: {DEMO}")


@pytest.mark.timeout(60)
async def test_img2img_right_size(engine: Engine) -> None:
    events, result = await run(
        engine, req(kind="img2img", init_image=png_bytes(40, 24), width=64, height=128, steps=4, strength=0.5)
    )
    assert Image.open(io.BytesIO(result.images[0].png)).size == (64, 128)
    # strength 0.5 of 4 steps runs the last 2, as diffusers does
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]
    assert "Denoising strength: 0.5" in result.images[0].parameters


@pytest.mark.timeout(60)
async def test_batch_gives_one_image_per_seed(engine: Engine) -> None:
    _, result = await run(engine, req(batch=3, seed=100))
    assert [image.seed for image in result.images] == [100, 101, 102]
    assert len({image.png for image in result.images}) == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM"])
async def test_a_preview_at_every_step_and_they_differ(engine: Engine, sampler: str) -> None:
    events, _ = await run(engine, req(steps=4, sampler=sampler))
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3, 4]
    assert all(p.total == 4 and p.mime == "image/webp" for p in previews)
    assert len({p.image for p in previews}) == 4
    first = Image.open(io.BytesIO(previews[0].image))
    assert first.format == "WEBP" and max(first.size) == 256
    # every preview is delivered before the job's Done
    assert events.index(previews[-1]) < len(events) - 1 and isinstance(events[-1], Done)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "DDIM"])
async def test_same_seed_same_bytes(engine: Engine, sampler: str) -> None:
    _, one = await run(engine, req(sampler=sampler, seed=42))
    _, two = await run(engine, req(sampler=sampler, seed=42))
    _, other = await run(engine, req(sampler=sampler, seed=43))
    assert one.images[0].png == two.images[0].png
    assert one.images[0].png != other.images[0].png


def submit_cancelled_at_step_2(engine: Engine, request: GenerationRequest, *, keep: bool = False
                               ) -> tuple[Job, list[JobEvent]]:
    """A job that is asked to stop (``keep``: keeping what it made) when its second step is reported."""
    events: list[JobEvent] = []
    job = None

    def on_event(event: JobEvent) -> None:
        events.append(event)
        if isinstance(event, Progress) and event.step == 2:
            job.cancel(keep=keep)

    job = engine.submit(request, on_event)
    return job, events


@pytest.mark.timeout(60)
async def test_cancel_stops_within_one_step(engine: Engine) -> None:
    job, events = submit_cancelled_at_step_2(engine, req(steps=60))
    with pytest.raises(GenerationCancelled):
        await job
    await asyncio.sleep(0)
    cancelled = [e for e in events if isinstance(e, Cancelled)]
    assert len(cancelled) == 1
    stop = cancelled[0]
    assert stop.step - stop.requested_at_step <= 1
    assert stop.step < 60
    assert not any(isinstance(e, Done) for e in events)


@pytest.mark.timeout(60)
async def test_a_cancel_that_keeps_decodes_the_step_it_stopped_at(engine: Engine) -> None:
    job, events = submit_cancelled_at_step_2(engine, req(steps=60, width=96), keep=True)
    result = await job
    await asyncio.sleep(0)
    stopped_at = result.timings["interrupted_at_step"]
    assert 2 <= stopped_at <= 3 and max(e.step for e in events if isinstance(e, Progress)) == stopped_at
    [image] = result.images
    assert Image.open(io.BytesIO(image.png)).size == (96, 64) and "Steps: 60" in image.parameters
    assert isinstance(events[-1], Done) and not any(isinstance(e, Cancelled) for e in events)
    _, whole = await run(engine, req(steps=60, width=96))
    assert whole.images[0].png != image.png and "interrupted_at_step" not in whole.timings


@pytest.mark.timeout(60)
async def test_cancel_while_queued_is_immediate(engine: Engine) -> None:
    first = engine.submit(req(steps=30))
    events: list[JobEvent] = []
    second = engine.submit(req(steps=30), events.append)
    assert second.cancel(keep=True)  # nothing made yet: even a cancel that keeps has nothing to keep
    with pytest.raises(GenerationCancelled):
        await second
    assert any(isinstance(e, Cancelled) for e in events)
    await first  # the worker moves on normally
    assert not any(isinstance(e, Started) for e in events)


@pytest.mark.timeout(90)
async def test_a_job_that_raises_fails_alone_and_the_worker_keeps_serving(models_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / DEMO).symlink_to(models_dir / DEMO)
    broken = models / "broken"
    broken.mkdir()
    for part in ("model_index.json", "scheduler", "tokenizer", "text_encoder", "vae"):
        source = models_dir / DEMO / part
        (broken / part).symlink_to(source, target_is_directory=source.is_dir())
    (broken / "unet").mkdir()
    (broken / "unet" / "config.json").write_text((models_dir / DEMO / "unet" / "config.json").read_text())
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")

    explode = {"on": True}

    def loader(spec, dtype):
        loaded = load_model(spec, dtype=dtype)
        original = loaded.txt2img.unet.forward

        def forward(*args, **kwargs):
            if explode["on"]:
                raise RuntimeError("kaboom inside the UNet")
            return original(*args, **kwargs)

        loaded.txt2img.unet.forward = forward
        return loaded

    engine = Engine(ModelRegistry(models), EngineConfig(preview_fps=0), loader=loader).start()
    try:
        events: list[JobEvent] = []
        with pytest.raises(GenerationFailed, match="kaboom"):
            await engine.submit(req(), events.append)
        await asyncio.sleep(0)
        assert isinstance(events[-1], Failed) and "kaboom" in events[-1].message
        with pytest.raises(GenerationFailed) as caught:
            await engine.submit(req(model="broken"))
        assert caught.value.code == "model_load_failed"
        explode["on"] = False
        _, result = await run(engine, req())  # same worker thread, next job: it serves
        assert result.images and engine.stats()["jobs"]["failed"] == 2
        assert all(worker.thread.is_alive() for worker in engine.workers)
    finally:
        await engine.aclose()


@pytest.mark.timeout(90)
async def test_out_of_memory_evicts_and_retries_once_then_fails_alone(registry: ModelRegistry) -> None:
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
        await engine.submit(req(model="demo-b"))  # something else resident, unpinned
        cache = engine.workers[0].cache
        assert "demo-b" in cache.resident()
        failures["left"] = 1
        _, result = await run(engine, req())
        assert result.images  # the retry succeeded
        assert engine.stats()["jobs"]["oom_retries"] == 1
        assert "demo-b" not in cache.resident()  # evicted to make room
        assert cache.resident().get(DEMO) == "device"  # the job's own model stayed for the retry
        failures["left"] = 2
        with pytest.raises(GenerationFailed) as caught:
            await engine.submit(req())
        assert caught.value.code == "out_of_memory"
        failures["left"] = 0
        _, result = await run(engine, req())
        assert result.images
    finally:
        await engine.aclose()


@pytest.mark.timeout(60)
async def test_preview_rate_cap_drops_frames_but_keeps_the_last(registry: ModelRegistry) -> None:
    engine = Engine(registry, EngineConfig(preview_fps=0.5)).start()
    try:
        events, _ = await run(engine, req(steps=8))
        steps = [e.step for e in events if isinstance(e, Preview)]
        assert steps[-1] == 8
        assert len(steps) < 8
        assert engine.stats()["jobs"]["previews_dropped"] >= 8 - len(steps)
    finally:
        await engine.aclose()


@pytest.mark.timeout(60)
async def test_events_reach_the_loop_thread_only(engine: Engine) -> None:
    import threading

    loop_thread = threading.get_ident()
    seen: set[int] = set()
    await engine.submit(req(), lambda event: seen.add(threading.get_ident()))
    await asyncio.sleep(0)
    assert seen == {loop_thread}


def _half_mask(width: int = 64, height: int = 64, *, feather: float = 0.0) -> bytes:
    """White (repaint) on the right half, black (keep) on the left."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 2, 0, width, height))
    if feather:
        mask = mask.filter(ImageFilter.GaussianBlur(feather))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM"])
async def test_inpainting_keeps_the_unmasked_half_exactly(engine: Engine, sampler: str) -> None:
    init = png_bytes(64, 64)
    original = _rgb(init)
    events, result = await run(engine, req(kind="img2img", init_image=init, mask=_half_mask(), strength=0.9,
                                           steps=5, sampler=sampler))
    out = _rgb(result.images[0].png)
    assert np.array_equal(out[:, :32], original[:, :32])  # the composite puts the original pixels back
    assert np.abs(out[:, 32:] - original[:, 32:]).mean() > 10  # the rest was repainted
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]


@pytest.mark.timeout(120)
async def test_inpainting_blends_the_latents_each_step(engine: Engine) -> None:
    """Without the per-step blend the repainted half would ignore its kept neighbour; with it, the
    kept latents steer the denoising, so the repainted half differs from a plain img2img's."""
    init = png_bytes(64, 64)
    common = dict(kind="img2img", init_image=init, strength=0.9, steps=4, sampler="Euler")
    _, plain = await run(engine, req(**common))
    _, masked = await run(engine, req(**common, mask=_half_mask()))
    assert not np.array_equal(_rgb(plain.images[0].png)[:, 40:], _rgb(masked.images[0].png)[:, 40:])


@pytest.mark.timeout(120)
async def test_inpainting_fills_and_a_black_mask_keeps_everything(engine: Engine) -> None:
    init = png_bytes(64, 64)
    outs = []
    for fill in (0, 1, 2, 3):
        _, result = await run(engine, req(kind="img2img", init_image=init, mask=_half_mask(feather=3),
                                          inpainting_fill=fill, strength=0.9, steps=3))
        out = _rgb(result.images[0].png)
        assert np.array_equal(out[:, :20], _rgb(init)[:, :20])  # far from the feathered edge: the original
        outs.append(out)
    assert len({out.tobytes() for out in outs}) == 4  # each fill starts the repainted area from something else
    black = io.BytesIO()
    Image.new("L", (64, 64), 0).save(black, format="PNG")
    _, kept = await run(engine, req(kind="img2img", init_image=init, mask=black.getvalue(), strength=1.0, steps=3))
    assert np.array_equal(_rgb(kept.images[0].png), _rgb(init))


async def test_a_mask_is_only_for_img2img_and_must_be_an_image(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as txt2img:
        engine.validate(req(mask=_half_mask()))
    assert txt2img.value.field == "mask"
    with pytest.raises(InvalidRequest) as broken:
        engine.validate(req(kind="img2img", init_image=png_bytes(), mask=b"not an image"))
    assert broken.value.field == "mask"
    with pytest.raises(InvalidRequest) as fill:
        engine.validate(req(kind="img2img", init_image=png_bytes(), mask=_half_mask(), inpainting_fill=4))
    assert fill.value.field == "inpainting_fill"


def test_only_masked_crop_box_is_padded_grown_to_the_aspect_and_kept_inside() -> None:
    mask = np.zeros((64, 96), np.float32)
    mask[24:40, 64:80] = 1.0
    assert crop_box(mask, 4, 64, 64) == (60, 20, 84, 44)  # padded, already square
    assert crop_box(mask, 0, 128, 64) == (56, 24, 88, 40)  # grown sideways to 2:1
    assert crop_box(mask, 0, 64, 128) == (64, 16, 80, 48)
    edge = np.zeros((64, 96), np.float32)
    edge[0:8, 90:96] = 1.0
    assert crop_box(edge, 0, 64, 64) == (88, 0, 96, 8)
    assert crop_box(edge, 0, 256, 64) == (64, 0, 96, 8)  # shifted back inside the image
    assert crop_box(np.zeros((8, 8), np.float32), 4, 64, 64) is None


@pytest.mark.timeout(120)
async def test_only_masked_inpainting_answers_the_whole_init_image(engine: Engine) -> None:
    init = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(init, "PNG")
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (64, 24, 80, 40))
    masked = io.BytesIO()
    mask.save(masked, format="PNG")
    _, result = await run(engine, req(kind="img2img", init_image=init.getvalue(), mask=masked.getvalue(),
                                      inpaint_full_res=True, inpaint_full_res_padding=8, strength=0.9, steps=3))
    out, original = _rgb(result.images[0].png), _rgb(init.getvalue())
    assert out.shape == original.shape
    kept = np.ones((64, 96), bool)
    kept[24:40, 64:80] = False
    assert np.array_equal(out[kept], original[kept])
    assert np.abs(out[24:40, 64:80] - original[24:40, 64:80]).mean() > 10
