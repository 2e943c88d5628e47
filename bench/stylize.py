#!/usr/bin/env python3
"""Stylize benchmark: a 4000x3000 phone photo, from preprocessing to "try another style" through the service.

    .venv/bin/python bench/stylize.py              # CPU: (a), (b) on the tiny model, (c) through a real server
    .venv/bin/python bench/stylize.py --sd15       # (b) also on the SD 1.5 architecture (random weights; slow on CPU)
    .venv/bin/python bench/stylize.py --gpu        # (b) on CUDA, fp16, 512 px, 20 steps (implies --sd15)

(a) Preprocessing of the photo (a JPEG stored sideways, EXIF orientation 6), as a worker does it for
    a ControlNet unit: sha256, decode (JPEG DCT-scaled), orient, scale to the model's area, canny, the
    control image's PNG. Target: under 0.3 s.
(b) The engine's seconds per denoising step without ControlNet and with one and two units, the same
    model, size and sampler; (c) the engine's content caches for a second style of one photo
    (bench/stylize_engine.py's figures).
(d) Through the service (`run.py serve` in a subprocess, embedded mode, the demo model and ControlNet,
    two presets at SD 1.5's 512 px area): the first style uploads the photo (POST /api/stylize, raw
    body) and the worker decodes and preprocesses it; "try another style" names the first job
    (`photo_of`): the bytes it sends, the blobs it adds, and the worker's preprocessing seconds
    (the job's `control_s` + `encode_image_s` timings). Target: nothing uploaded, nothing preprocessed.
Figures only, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import torch
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import guard  # noqa: E402
from bench.http_api import free_port, make_token, start_server  # noqa: E402
from bench.stylize_engine import (  # noqa: E402
    SD15, SD15_CONTROLNET, build_sd15_with_controlnet, engine_figures, phone_photo, show_engine, show_preprocessing,
)
from config import Settings  # noqa: E402
from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME, build_demo_controlnet, build_demo_model  # noqa: E402
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.images import fit_to_area, upright_size  # noqa: E402
from inference.models import CONTROLNET_FOLDER, ModelRegistry  # noqa: E402
from server.presets import demo_preset_values  # noqa: E402
from server.runtime import Runtime  # noqa: E402

JOB_TIMEOUT_SECS = 600
SERVICE_SIDE_PX = 512  # SD 1.5's native area: what a real preset renders a phone photo at


async def add_presets(data_dir: Path) -> None:
    """Two styles on the same checkpoint and ControlNet (what "try another style" switches between)."""
    runtime = await Runtime.start(Settings(data_dir=data_dir, inference_enabled=False))
    try:
        base = demo_preset_values(DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME) | {"side_px": SERVICE_SIDE_PX, "steps": 4}
        await runtime.presets.ensure(base | {"name": "bench-ink", "title_en": "Ink",
                                             "prompt_template": "{subject}, ink drawing"})
        await runtime.presets.ensure(base | {"name": "bench-soft", "title_en": "Soft",
                                             "prompt_template": "{subject}, soft watercolour",
                                             "controls": [{"model": DEMO_CONTROLNET_NAME, "scale": 0.6}]})
    finally:
        await runtime.close()


async def stylize(base: str, token: str, *, preset: str, photo: bytes | None = None,
                  photo_of: str | None = None) -> dict[str, Any]:
    """One stylize job through the service: the request's bytes and seconds, then its events to gen.done."""
    headers = {"Authorization": f"Bearer {token}"}
    query = {"preset": preset, "subject": "a lighthouse"} | ({"photo_of": photo_of} if photo_of else {})
    url = base.replace("http://", "ws://") + f"/ws?token={token}"
    async with connect(url, additional_headers={"Origin": base}, max_size=None, compression=None) as ws, \
            httpx.AsyncClient(base_url=base, timeout=JOB_TIMEOUT_SECS) as http:
        started = time.perf_counter()
        response = await http.post("/api/stylize", params=query, content=photo or b"",
                                   headers=headers | ({"Content-Type": "image/jpeg"} if photo else {}))
        submitted = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"stylize refused: {response.status_code} {response.text}")
        job = response.json()["job"]
        await ws.send(msgpack.packb({"op": "sub", "topic": f"job:{job['id']}", "since": 0}))
        while True:
            frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), JOB_TIMEOUT_SECS), raw=False)
            for event in frame if isinstance(frame, list) else [frame]:
                if event.get("type") == "gen.done":
                    return {"job": job, "sent_bytes": len(response.request.content), "submit_s": submitted,
                            "total_s": time.perf_counter() - started, "timings": event["timings"]}
                if event.get("type") in ("gen.error", "error"):
                    raise RuntimeError(f"job failed: {event}")


def blob_count(data_dir: Path) -> int:
    return sum(1 for path in (data_dir / "blobs").rglob("*") if path.is_file())


def service_figures(data: bytes, workdir: Path) -> None:
    data_dir = workdir / "service-data"
    models = data_dir / "models"
    if not (models / DEMO_MODEL_NAME).exists():
        build_demo_model(models / DEMO_MODEL_NAME)
    if not (models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME).exists():
        build_demo_controlnet(models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME)
    asyncio.run(add_presets(data_dir))
    port = free_port()
    server = start_server({"VA_DATA_DIR": str(data_dir), "VA_PREVIEW_FPS": "0"}, port)
    try:
        base = f"http://127.0.0.1:{port}"
        token = make_token(base)

        async def both() -> tuple[dict, dict, int, int]:
            first = await stylize(base, token, preset="bench-ink", photo=data)
            blobs_before = blob_count(data_dir)
            second = await stylize(base, token, preset="bench-soft", photo_of=first["job"]["id"])
            return first, second, blobs_before, blob_count(data_dir)

        first, second, blobs_before, blobs_after = asyncio.run(both())
    finally:
        guard.stop(server)

    def prep(run: dict) -> float:
        return run["timings"].get("control_s", 0.0) + run["timings"].get("encode_image_s", 0.0)

    width, height = first["job"]["width"], first["job"]["height"]
    print(f"\n(d) through the service (run.py serve, embedded; demo model + ControlNet at {width}x{height}, "
          f"{first['job']['steps']} steps)")
    for name, run in (("first style ", first), ("second style", second)):
        t = run["timings"]
        print(f"    {name}: sent {run['sent_bytes'] / 1e6:6.2f} MB in {run['submit_s']:.3f}s | worker preprocessing "
              f"{prep(run):.4f}s (control {t.get('control_s', 0):.4f}s, init latents {t.get('encode_image_s', 0):.4f}s) "
              f"| denoise {t.get('denoise_s', 0):.3f}s | submit to gen.done {run['total_s']:.3f}s")
    print(f"    try another style: {first['sent_bytes'] - second['sent_bytes']:,} bytes not uploaded "
          f"({second['sent_bytes']} sent, {first['submit_s'] - second['submit_s']:.3f}s less to submit here on "
          f"loopback; a phone's uplink takes seconds for them), {blobs_after - blobs_before} blobs added (the "
          f"result's PNG and thumbnail; no photo), worker preprocessing {prep(first) - prep(second):.4f}s saved "
          f"({prep(second) * 1000:.2f} ms left: hashing the photo's bytes for the cache lookups); "
          f"end to end the denoising dominates ({first['total_s']:.2f}s vs {second['total_s']:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--sd15", action="store_true", help="(b) on the SD 1.5 architecture too")
    parser.add_argument("--side", type=int, help="the SD 1.5 run's area: side x side (512 on a GPU, 256 on a CPU)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "stylize")
    parser.add_argument("--deadline-secs", type=float, default=3600)
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    gpu = args.gpu and torch.cuda.is_available()
    if args.gpu and not gpu:
        print("--gpu asked for but no CUDA device: CPU figures follow")
    device, dtype = ("cuda:0", torch.float16) if gpu else ("cpu", torch.float32)
    data = phone_photo()
    shown = upright_size(data)
    print(f"photo: 4000x3000 JPEG, EXIF orientation 6 (shown {shown[0]}x{shown[1]}), {len(data) / 1e6:.1f} MB; "
          f"device={device} torch={torch.__version__} runs={args.runs}")

    show_preprocessing(data, args.runs)

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        asyncio.run(per_step(args, data, Path(scratch) / "tiny", device, dtype, gpu))
        service_figures(data, Path(scratch))


async def per_step(args: argparse.Namespace, data: bytes, tiny: Path, device: str, dtype: torch.dtype,
                   gpu: bool) -> None:
    """(b): seconds per step with 0, 1 and 2 ControlNet units on the tiny model (and SD 1.5 when asked)."""
    shown = upright_size(data)
    build_demo_model(tiny / DEMO_MODEL_NAME)
    build_demo_controlnet(tiny / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME)
    runs: list[tuple[str, Path, str, str, int, int]] = [("tiny demo model", tiny, DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME,
                                                          256, max(args.steps or 4, 3))]
    if args.sd15 or gpu:
        models = args.workdir / "models"
        build_sd15_with_controlnet(models)
        runs.append(("SD 1.5 architecture", models, SD15, SD15_CONTROLNET, args.side or (512 if gpu else 256),
                     args.steps or (20 if gpu else 3)))
    for label, folder, model, controlnet, side, steps in runs:
        engine = Engine(ModelRegistry(folder), EngineConfig(devices=[device], preview_fps=0, dtype=dtype)).start()
        try:
            width, height = fit_to_area(*shown, side)
            figures = await engine_figures(engine, model, controlnet, data, width, height, steps, args.runs)
            show_engine(f"{label}, {width}x{height}, {steps} steps, {dtype}", figures)
        finally:
            await engine.aclose()


if __name__ == "__main__":
    main()
