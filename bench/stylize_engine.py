#!/usr/bin/env python3
"""Stylize engine benchmark: prints figures, never pass/fail.

    python bench/stylize_engine.py            # CPU: SD 1.5 architecture at 256 px area, 3 steps
    python bench/stylize_engine.py --gpu      # CUDA: 512 px area, 20 steps, fp16
    python bench/stylize_engine.py --tiny     # the tiny demo model only (seconds)

On a 4000x3000 synthetic phone photo (a JPEG stored sideways with EXIF orientation 6):

(a) preprocessing: sha256, decode (JPEG DCT-scaled), EXIF orient, scale to the model's area
    (`fit_to_area`), canny, the control image's PNG; target under 0.3 s. A full-size decode
    (no DCT scaling) is shown beside it for comparison.
(b) the engine's seconds per denoising step without ControlNet, with one unit and with two,
    txt2img at the same size and sampler: the tiny model and the SD 1.5 architecture (random
    weights, from the bundled configs, as bench/engine.py builds it) with a ControlNet made from
    its UNet (ControlNetModel.from_unet, 361 M parameters, as the SD 1.5 ControlNets are).
(c) the content-hash caches for a second style of the same photo (img2img + ControlNet): the
    preprocessing + init-latent seconds of the first job, of a second style (new prompt and
    preprocessor: the decoded photo and the init latents are reused) and of the same style again.
Figures are medians of --runs runs. `preprocess_figures()` and `engine_figures()` can be called
from another benchmark (the service's bench/stylize.py).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.engine import build_sd15_random  # noqa: E402
from inference.control import canny, content_hash, encode_png, photo_at_size  # noqa: E402
from inference.demo_model import (  # noqa: E402
    DEMO_CONTROLNET_NAME,
    DEMO_MODEL_NAME,
    build_demo_controlnet,
    build_demo_model,
    controlnet_from_unet,
)
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.images import EXIF_ORIENTATION_TAG, fit_to_area, probe_image, upright_size  # noqa: E402
from inference.models import CONTROLNET_FOLDER, ModelRegistry  # noqa: E402
from inference.requests import GenerationRequest  # noqa: E402
from tests.support.photos import photo  # noqa: E402

SD15 = "sd15-random"
SD15_CONTROLNET = "sd15-random-control"
TARGET_PREPROCESS_S = 0.3


def phone_photo(width: int = 4000, height: int = 3000) -> bytes:
    """A 4000x3000 JPEG stored sideways with EXIF orientation 6, as phones write portrait shots."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6
    out = io.BytesIO()
    photo(width, height, variant=7).save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def median(values: list[float]) -> float:
    return statistics.median(values)


def preprocess_figures(data: bytes, side_px: int, runs: int = 5) -> dict[str, float]:
    """Seconds (medians) of each preprocessing stage for one photo at a model of native side `side_px`."""
    rows: list[dict[str, float]] = []
    for _ in range(runs):
        row: dict[str, float] = {}
        started = time.perf_counter()
        content_hash(data)
        row["sha256_s"] = time.perf_counter() - started
        started = time.perf_counter()
        probe_image(data, field="controls[0].image")
        width, height = fit_to_area(*upright_size(data), side_px)
        rgb = photo_at_size(data, width, height)  # decode (DCT-scaled), orient, flatten, resize
        row["decode_orient_scale_s"] = time.perf_counter() - started
        started = time.perf_counter()
        edges = canny(rgb, 100, 200)
        row["canny_s"] = time.perf_counter() - started
        started = time.perf_counter()
        encode_png(edges)
        row["png_s"] = time.perf_counter() - started
        row["total_s"] = sum(row.values())
        rows.append(row)
    figures = {key: median([row[key] for row in rows]) for key in rows[0]}
    figures["width"], figures["height"] = width, height
    started = time.perf_counter()
    with Image.open(io.BytesIO(data)) as full:
        full.load()  # no draft(): every pixel of the 12 MP photo
    figures["full_decode_s"] = time.perf_counter() - started
    return figures


def show_preprocessing(data: bytes, runs: int) -> None:
    """(a) for a 512 px and a 1024 px model, against the target."""
    for model_side in (512, 1024):
        f = preprocess_figures(data, model_side, runs=max(runs, 5))
        verdict = "under" if f["total_s"] < TARGET_PREPROCESS_S else "OVER"
        print(f"\n(a) preprocessing for a {model_side} px model -> {f['width']}x{f['height']}: {f['total_s']:.3f}s "
              f"({verdict} the {TARGET_PREPROCESS_S}s target)")
        print(f"    sha256 {f['sha256_s']:.4f}s | decode+orient+scale {f['decode_orient_scale_s']:.4f}s | "
              f"canny {f['canny_s']:.4f}s | PNG {f['png_s']:.4f}s | (a full 12 MP decode alone: "
              f"{f['full_decode_s']:.3f}s)")


def build_sd15_with_controlnet(models: Path) -> None:
    build_sd15_random(models / SD15, torch.float16)
    target = models / CONTROLNET_FOLDER / SD15_CONTROLNET
    if not (target / "config.json").exists():
        from diffusers import UNet2DConditionModel  # noqa: PLC0415 -- only when building

        unet = UNet2DConditionModel.from_pretrained(str(models / SD15), subfolder="unet", local_files_only=True)
        controlnet = controlnet_from_unet(unet)
        # The random outputs are scaled for the tiny model; SD 1.5's wider layers need them smaller to stay finite.
        with torch.no_grad():
            for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
                conv.weight.mul_(0.1)
        controlnet.to(torch.float16).save_pretrained(str(target), safe_serialization=True)


async def engine_figures(engine: Engine, model: str, controlnet: str, data: bytes, width: int, height: int,
                         steps: int, runs: int) -> dict[str, Any]:
    """Seconds per step without/with ControlNet, and the caches' saving for a second style of one photo."""
    base = dict(model=model, prompt="a lighthouse at dusk, game art", negative_prompt="blurry", steps=steps,
                width=width, height=height, sampler="Euler a")
    unit = {"model": controlnet, "image": data}
    variants = {"none": [], "one unit": [unit], "two units": [unit, {**unit, "preprocessor": "softedge"}]}
    await engine.submit(GenerationRequest(**base, seed=0, controls=variants["two units"]))  # warm: loads, caches
    times: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(runs):  # interleaved, so a neighbour's load on a shared host falls on every variant alike
        for name, controls in variants.items():
            result = await engine.submit(GenerationRequest(**base, seed=1 + run, controls=controls))
            times[name].append(result.timings["denoise_s"] / steps)
    per_step = {name: median(values) for name, values in times.items()}

    # (c) a new photo (fresh caches for it), then a second style and the same style again
    other = io.BytesIO()
    Image.open(io.BytesIO(data)).save(other, format="JPEG", quality=89, exif=Image.open(io.BytesIO(data)).getexif())
    fresh = other.getvalue()
    i2i = dict(base, kind="img2img", init_image=fresh, strength=0.6)

    def prep(result: Any) -> float:
        return result.timings.get("control_s", 0.0) + result.timings.get("encode_image_s", 0.0)

    first = await engine.submit(GenerationRequest(**i2i, seed=1, controls=[{**unit, "image": fresh}]))
    second = await engine.submit(GenerationRequest(**{**i2i, "prompt": "the same lighthouse, watercolour"}, seed=2,
                                                   controls=[{**unit, "image": fresh, "preprocessor": "softedge"}]))
    again = await engine.submit(GenerationRequest(**i2i, seed=3, controls=[{**unit, "image": fresh}]))
    return {"per_step": per_step, "first_prep_s": prep(first), "second_style_prep_s": prep(second),
            "same_style_prep_s": prep(again), "first": first.timings, "second": second.timings}


def show_engine(label: str, figures: dict[str, Any]) -> None:
    per_step = figures["per_step"]
    none = per_step["none"]
    print(f"\n(b) {label}: seconds per step (txt2img)")
    for name, seconds in per_step.items():
        print(f"    {name:<10} {seconds:.4f}s/step  ({seconds / none:.2f}x of none)")
    print(f"\n(c) {label}: preprocessing + init latents of an img2img ControlNet job on one photo")
    first, second = figures["first"], figures["second"]
    print(f"    first style   {figures['first_prep_s']:.4f}s (control {first.get('control_s', 0):.4f}s, "
          f"init latents {first.get('encode_image_s', 0):.4f}s)")
    print(f"    second style  {figures['second_style_prep_s']:.4f}s (control {second.get('control_s', 0):.4f}s: "
          f"new preprocessor on the cached decoded photo; init latents {second.get('encode_image_s', 0):.4f}s: cached)")
    print(f"    same again   {figures['same_style_prep_s']:.4f}s (everything cached)")
    print(f"    saving for a second style: {figures['first_prep_s'] - figures['second_style_prep_s']:.4f}s per job")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="the tiny demo model only")
    parser.add_argument("--side", type=int, help="the SD 1.5 run's area: side x side pixels (512 on a GPU)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out" / "engine")
    args = parser.parse_args()
    gpu = args.gpu and torch.cuda.is_available()
    if args.gpu and not gpu:
        print("--gpu asked for but no CUDA device: CPU figures follow")
    device = "cuda:0" if gpu else "cpu"
    dtype = torch.float16 if gpu else torch.float32
    side = args.side or (512 if gpu else 256)
    steps = args.steps or (20 if gpu else 3)
    threads = torch.cuda.get_device_name(0) if gpu else f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} cores"
    print(f"device={device} ({threads}) dtype={dtype} torch={torch.__version__} runs={args.runs}")

    data = phone_photo()
    print(f"photo: 4000x3000 JPEG, EXIF orientation 6 (shown {upright_size(data)[0]}x{upright_size(data)[1]}), "
          f"{len(data) / 1e6:.1f} MB")
    show_preprocessing(data, args.runs)

    models = args.workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    tiny_models = args.workdir / "tiny-models"
    if not (tiny_models / DEMO_MODEL_NAME).exists():
        build_demo_model(tiny_models / DEMO_MODEL_NAME)
        build_demo_controlnet(tiny_models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME)
    engine = Engine(ModelRegistry(tiny_models), EngineConfig(devices=[device], preview_fps=0, dtype=dtype)).start()
    try:
        width, height = fit_to_area(*upright_size(data), 96)
        show_engine(f"tiny demo model, {width}x{height}, {max(steps, 3)} steps",
                    await engine_figures(engine, DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME, data, width, height,
                                         max(steps, 3), args.runs))
    finally:
        await engine.aclose()
    if args.tiny:
        return

    started = time.perf_counter()
    build_sd15_with_controlnet(models)
    print(f"\nSD 1.5 architecture + a ControlNet from its UNet, random weights (built/reused in "
          f"{time.perf_counter() - started:.1f}s)")
    engine = Engine(ModelRegistry(models), EngineConfig(devices=[device], preview_fps=0, dtype=dtype)).start()
    try:
        width, height = fit_to_area(*upright_size(data), side)
        figures = await engine_figures(engine, SD15, SD15_CONTROLNET, data, width, height, steps, args.runs)
        show_engine(f"SD 1.5 architecture, {width}x{height}, {steps} steps, guidance 7, {dtype}", figures)
    finally:
        await engine.aclose()
    assert np.isfinite(figures["per_step"]["none"])


if __name__ == "__main__":
    asyncio.run(main())
