#!/usr/bin/env python3
"""Inference engine benchmark: prints figures, never pass/fail.

    python bench/engine.py            # CPU: SD 1.5 architecture at 256x256, few steps
    python bench/engine.py --gpu      # CUDA: 512x512, 20 steps, fp16, with/without torch.compile

(a) preview cost per step as a fraction of step time; (b) model switch: cache hit vs
cold load vs a raw read of the same safetensors files; (c) seconds saved per job by
the text-encoder and init-latent caches; (d) seconds per image and steps/s through the
engine vs a bare diffusers pipeline call, with and without SDPA (and torch.compile on
a GPU). The model is the real SD 1.5 UNet/VAE/text-encoder architecture from the
bundled configs with random weights: the timings are those of SD 1.5, the images noise.
Figures are medians of --runs runs.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench import guard  # noqa: E402
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import BUNDLED_CONFIGS, ModelRegistry  # noqa: E402
from inference.pipelines import load_model  # noqa: E402
from inference.requests import GenerationRequest  # noqa: E402

SD15 = BUNDLED_CONFIGS / "sd15"


def build_sd15_random(folder: Path, dtype: torch.dtype) -> Path:
    """SD 1.5 architecture from the bundled configs, random weights, saved as safetensors."""
    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(str(SD15), subfolder="vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(str(SD15), subfolder="text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(str(SD15), subfolder="tokenizer", local_files_only=True),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(SD15), subfolder="unet")),
        scheduler=PNDMScheduler.from_pretrained(str(SD15), subfolder="scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # Random init gives activations far larger than trained weights; shrink them so fp16 stays finite.
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.mul_(0.5)
    pipe.to(dtype).save_pretrained(str(folder), safe_serialization=True)
    return folder


def median(xs: list[float]) -> float:
    return statistics.median(xs)


async def engine_job(engine: Engine, request: GenerationRequest) -> dict:
    result = await engine.submit(request)
    return result.timings


def raw_read_seconds(folder: Path) -> float:
    started = time.perf_counter()
    for f in sorted(folder.rglob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(64 * 1024 * 1024):
                pass
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--size", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp16", "fp32"],
                        help="default: fp16 on a GPU, fp32 on the CPU (the files are fp16: fp32 converts every weight)")
    parser.add_argument("--load-only", action="store_true",
                        help="only (b): cold load vs raw read of the same files, taking turns, no engine")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out" / "engine")
    args = parser.parse_args()
    gpu = args.gpu and torch.cuda.is_available()
    if args.gpu and not gpu:
        print("--gpu asked for but no CUDA device: CPU figures follow")
    device = "cuda:0" if gpu else "cpu"
    dtype = torch.float16 if gpu else torch.float32
    if args.dtype:
        dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    size = args.size or (512 if gpu else 256)
    steps = args.steps or (20 if gpu else 4)
    runs = args.runs
    print(f"device={device} ({torch.cuda.get_device_name(0) if gpu else f'{torch.get_num_threads()} CPU threads'}) "
          f"dtype={dtype} size={size}x{size} steps={steps} guidance=7 runs={runs} torch={torch.__version__}")
    models = args.workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_sd15_random(models / "sd15-random", torch.float16)
    print(f"model: SD 1.5 architecture, random weights (built/reused in {time.perf_counter() - t0:.1f}s)")
    registry = ModelRegistry(models)
    spec = registry.get("sd15-random")
    if args.load_only:
        raw_read_seconds(spec.path)  # into the page cache
        # A process's first load also builds the tokenizers, which later checkpoints with the same files share
        # (inference/shared_tokenizers.py): shown apart, the median is of the loads after it.
        started = time.perf_counter()
        load_model(spec, dtype=dtype).to(device)
        first = time.perf_counter() - started
        raw, cold_loads = [], []
        for _ in range(runs):
            raw.append(raw_read_seconds(spec.path))
            started = time.perf_counter()
            load_model(spec, dtype=dtype).to(device)
            cold_loads.append(time.perf_counter() - started)
        each = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
        print(f"\n(b) cold load {median(cold_loads):.3f}s (runs {each(cold_loads)}; the process's first, which "
              f"builds the tokenizer: {first:.3f}s) | raw read of {spec.size_bytes / 1e9:.2f} GB {median(raw):.3f}s "
              f"(runs {each(raw)})")
        print(f"    cold/raw = {median(cold_loads) / median(raw):.2f}x")
        if dtype != torch.float16:
            from safetensors.torch import load_file  # noqa: PLC0415

            convert = []
            for _ in range(runs):  # the floor for an fp32 load of fp16 files: map them, convert every tensor
                started = time.perf_counter()
                for f in sorted(spec.path.rglob("*.safetensors")):
                    converted = {k: v.to(dtype) for k, v in load_file(str(f)).items()}
                    del converted
                convert.append(time.perf_counter() - started)
            print(f"    map + convert fp16 -> {dtype} alone: {median(convert):.3f}s "
                  f"(cold load / that = {median(cold_loads) / median(convert):.2f}x)")
        return

    engine = Engine(registry, EngineConfig(devices=[device], preview_fps=0, dtype=dtype)).start()
    base = dict(model="sd15-random", prompt="a lighthouse at dusk", negative_prompt="blurry", steps=steps,
                width=size, height=size, seed=1, sampler="Euler a")
    try:
        # (b) model switch: cold load (first use), cache hit, raw read of the same files
        cold = await engine_job(engine, GenerationRequest(**{**base, "steps": 1}))
        cache = engine.workers[0].cache
        hit_s = []
        for _ in range(runs):
            started = time.perf_counter()
            with cache.use("sd15-random"):
                pass
            hit_s.append(time.perf_counter() - started)
        raw = [raw_read_seconds(spec.path) for _ in range(runs)]
        cold_loads = []
        for _ in range(runs):
            started = time.perf_counter()
            load_model(spec, dtype=dtype).to(device)
            cold_loads.append(time.perf_counter() - started)
        print("\n(b) model switch (weights in the OS page cache after the first read)")
        print(f"    cold load {median(cold_loads):.3f}s (first engine load {cold['load_s']:.3f}s) | "
              f"raw read of {spec.size_bytes / 1e9:.2f} GB {median(raw):.3f}s | cache hit {median(hit_s) * 1e6:.1f}us")
        print(f"    cold/raw = {median(cold_loads) / median(raw):.1f}x, cold/hit = {median(cold_loads) / median(hit_s):,.0f}x")

        # (a) preview cost and (d) engine timings
        engine.text_cache.clear()
        per_image, sps, preview_frac, encode_frac = [], [], [], []
        for i in range(runs):
            before = dict(vars(engine.counters))
            enc_before = engine.encoder.encode_seconds
            t = await engine_job(engine, GenerationRequest(**{**base, "seed": 10 + i}))
            steps_run = engine.counters.steps - before["steps"]
            step_s = t["denoise_s"] / steps_run
            preview_frac.append((engine.counters.preview_seconds - before["preview_seconds"]) / steps_run / step_s)
            encode_frac.append((engine.encoder.encode_seconds - enc_before) / steps_run / step_s)
            per_image.append(t["run_s"])
            sps.append(t["steps_per_s"])
        print("\n(a) preview every step (linear latent->RGB on the worker; resize+WebP on the encoder thread)")
        print(f"    worker-side cost {median(preview_frac) * 100:.3f}% of a step; encoder-thread work "
              f"{median(encode_frac) * 100:.2f}% of a step (off the worker, overlapped)")

        # (c) the two small caches
        engine.text_cache.clear()
        miss = await engine_job(engine, GenerationRequest(**{**base, "steps": 1, "prompt": "cache probe"}))
        hit = await engine_job(engine, GenerationRequest(**{**base, "steps": 1, "prompt": "cache probe"}))
        buf = io.BytesIO()
        Image.new("RGB", (size, size), (120, 80, 200)).save(buf, format="PNG")
        i2i = {**base, "kind": "img2img", "init_image": buf.getvalue(), "strength": 0.5, "steps": 2}
        lmiss = await engine_job(engine, GenerationRequest(**i2i))
        lhit = await engine_job(engine, GenerationRequest(**{**i2i, "prompt": "another prompt"}))
        print("\n(c) seconds saved per job")
        print(f"    text-encoder cache: {miss['encode_prompt_s'] - hit['encode_prompt_s']:.4f}s "
              f"(miss {miss['encode_prompt_s']:.4f}s, hit {hit['encode_prompt_s']:.4f}s)")
        print(f"    init-latent cache:  {lmiss['encode_image_s'] - lhit['encode_image_s']:.4f}s "
              f"(miss {lmiss['encode_image_s']:.4f}s, hit {lhit['encode_image_s']:.4f}s)")
    finally:
        await engine.aclose()

    # (d) bare diffusers call on the same model, SDPA on/off, compile on GPU
    pipe = load_model(spec, dtype=dtype).txt2img.to(device)

    def bare() -> float:
        started = time.perf_counter()
        pipe(prompt=base["prompt"], negative_prompt=base["negative_prompt"], num_inference_steps=steps,
             guidance_scale=7.0, height=size, width=size, generator=torch.Generator("cpu").manual_seed(1))
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    from diffusers import EulerAncestralDiscreteScheduler  # noqa: PLC0415 -- same sampler as the engine runs

    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    bare()  # warm-up
    bare_sdpa = median([bare() for _ in range(runs)])
    pipe.unet.set_attn_processor(AttnProcessor())
    bare_plain = median([bare() for _ in range(runs)])
    print(f"\n(d) {size}x{size}, {steps} steps, guidance 7, {dtype}")
    print(f"    engine (SDPA):        {median(per_image):.3f}s/image, {median(sps):.2f} steps/s")
    print(f"    bare diffusers SDPA:  {bare_sdpa:.3f}s/image, {steps / bare_sdpa:.2f} steps/s (incl. decode)")
    print(f"    bare diffusers no SDPA (AttnProcessor): {bare_plain:.3f}s/image")
    print(f"    engine/bare = {median(per_image) / bare_sdpa:.3f}; SDPA speed-up = {bare_plain / bare_sdpa:.2f}x")
    if gpu:
        from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: PLC0415

        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
        started = time.perf_counter()
        bare()
        print(f"    torch.compile warm-up {time.perf_counter() - started:.1f}s")
        compiled = median([bare() for _ in range(runs)])
        print(f"    bare diffusers SDPA + torch.compile: {compiled:.3f}s/image, {steps / compiled:.2f} steps/s, "
              f"{bare_sdpa / compiled:.2f}x vs eager")
    else:
        print("    torch.compile: not measured on the CPU (no GPU in this run; inductor's C++ build takes minutes)")


if __name__ == "__main__":
    # CPU runs of the larger sizes take tens of minutes; past two hours something is stuck.
    guard.main(lambda: asyncio.run(main()), deadline_secs=2 * 3600)
