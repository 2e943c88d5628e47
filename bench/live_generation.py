"""Benchmark: live generation through the service against the bare engine, and a burst of jobs.

(a) End-to-end seconds per job through the server (WebSocket `gen.submit` -> `gen.done`
    received, previews on) divided by a bare `Engine` call for the same model and settings
    in this process, measured alternately in one run: the service's overhead.
(b) Preview latency: the worker's step callback (`at` in the event) -> received by the client.
(c) Load: 10 users submit 50 jobs at once with a global queue cap of 20: admitted jobs all
    complete exactly once, the rest are refused with `queue_full`; peak RSS of the server.

    .venv/bin/python bench/live_generation.py [--size 256] [--steps 20] [--runs 5] [--model demo-tiny]

Without --model-dir the tiny demo model is built in a temporary folder. Figures only, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgpack
import psutil
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from bench.http_api import free_port, make_token, start_server  # noqa: E402
from inference.demo_model import DEMO_MODEL_NAME, build_demo_model  # noqa: E402
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import ModelRegistry  # noqa: E402
from inference.requests import GenerationRequest  # noqa: E402

PREVIEW_FPS = 8.0  # the service's default
# One job (or the burst's last one) not finished in this long is a hang, not a slow machine.
JOB_TIMEOUT_SECS = 600


async def through_server(base: str, token: str, params: dict) -> tuple[float, list[float]]:
    """Seconds from gen.submit to gen.done, and each preview's worker-to-client latency."""
    url = base.replace("http://", "ws://") + f"/ws?token={token}"
    latencies = []
    async with connect(url, additional_headers={"Origin": base}, max_size=None, compression=None) as ws:
        started = time.perf_counter()
        await ws.send(msgpack.packb({"op": "gen.submit", "ref": "s", **params}))
        while True:
            frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), JOB_TIMEOUT_SECS), raw=False)
            now = time.time()
            for event in frame if isinstance(frame, list) else [frame]:
                kind = event.get("type")
                if kind == "gen.preview":
                    latencies.append(now - event["at"])
                elif kind == "gen.done":
                    return time.perf_counter() - started, latencies
                elif kind in ("gen.error", "error"):
                    raise RuntimeError(f"job failed: {event}")


async def bare_engine(engine: Engine, params: dict) -> float:
    started = time.perf_counter()
    await engine.submit(GenerationRequest(**params), lambda _event: None)
    return time.perf_counter() - started


async def overhead(base: str, token: str, models_dir: Path, params: dict, runs: int) -> None:
    engine = Engine(ModelRegistry(models_dir), EngineConfig(preview_fps=PREVIEW_FPS)).start()
    try:
        await bare_engine(engine, params)  # warm: load the model, fill caches as the server's first job does
        await through_server(base, token, params)
        served, bare, previews = [], [], []
        for _ in range(runs):
            seconds, latencies = await through_server(base, token, params)
            served.append(seconds)
            previews.extend(latencies)
            bare.append(await bare_engine(engine, params))
    finally:
        await engine.aclose()
    s, b = statistics.median(served), statistics.median(bare)
    print(f"(a) per job, median of {runs}: through the server {s:.3f} s, bare engine {b:.3f} s, "
          f"ratio {s / b:.3f} (overhead {(s / b - 1) * 100:+.1f}%)")
    previews.sort()
    if previews:
        print(f"(b) preview latency, worker step -> client ({len(previews)} frames): "
              f"p50 {previews[len(previews) // 2] * 1000:.1f} ms, p99 {previews[int(len(previews) * 0.99)] * 1000:.1f} ms")


async def burst(base: str, users: int, jobs_each: int, params: dict, server_pid: int) -> None:
    tokens = [await asyncio.to_thread(make_token, base) for _ in range(users)]
    peak = [0]
    process = psutil.Process(server_pid)
    sampling = True

    async def sample() -> None:
        while sampling:
            peak[0] = max(peak[0], process.memory_info().rss)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        async def submit(token: str) -> httpx.Response:
            return await client.post("/api/jobs", json=params, headers={"Authorization": f"Bearer {token}"})

        started = time.perf_counter()
        responses = await asyncio.gather(*(submit(t) for t in tokens for _ in range(jobs_each)))
        admitted = [(r.json()["job"]["id"], t) for r, t in zip(responses, [t for t in tokens for _ in range(jobs_each)])
                    if r.status_code == 202]
        refused = [r for r in responses if r.status_code == 429]
        codes = {r.json()["error"]["code"] for r in refused}
        finished: dict[str, dict] = {}
        deadline = time.perf_counter() + JOB_TIMEOUT_SECS
        while len(finished) < len(admitted):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{len(admitted) - len(finished)} admitted jobs not finished after "
                                   f"{JOB_TIMEOUT_SECS} s")
            for job_id, token in admitted:
                if job_id not in finished:
                    job = (await client.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})).json()["job"]
                    if job["status"] not in ("queued", "running"):
                        finished[job_id] = job
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        listed = 0
        for token in tokens:
            listed += len((await client.get("/api/jobs?mine=1&limit=50", headers={"Authorization": f"Bearer {token}"})).json()["jobs"])
    sampling = False
    await sampler
    statuses = [job["status"] for job in finished.values()]
    single = all(len(job["images"]) == params.get("batch", 1) for job in finished.values())
    print(f"(c) {users} users x {jobs_each} jobs at once, global cap 20: {len(admitted)} admitted, "
          f"{len(refused)} refused ({', '.join(sorted(codes))}), other answers {len(responses) - len(admitted) - len(refused)}")
    print(f"    admitted jobs: {statuses.count('done')} done, {len(statuses) - statuses.count('done')} not done; "
          f"one image set each: {single}; jobs stored: {listed} (= admitted: {listed == len(admitted)}); "
          f"{elapsed:.1f} s; server peak RSS {peak[0] / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=DEMO_MODEL_NAME)
    parser.add_argument("--model-dir", type=Path, help="a models folder holding --model (default: build the demo)")
    parser.add_argument("--deadline-secs", type=float, default=3600, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp())
    models = data / "models"
    if args.model_dir:
        models.symlink_to(args.model_dir.resolve(), target_is_directory=True)
    else:
        build_demo_model(models / DEMO_MODEL_NAME)
    params = {"model": args.model, "prompt": "a lighthouse on a cliff at dawn, oil painting",
              "width": args.size, "height": args.size, "steps": args.steps, "guidance": 7.0,
              "sampler": "Euler a", "seed": 1}
    port = free_port()
    server = start_server({"VA_DATA_DIR": str(data), "VA_QUEUE_MAX_GLOBAL": "20", "VA_QUEUE_MAX_PER_USER": "5",
                           "VA_PREVIEW_FPS": str(PREVIEW_FPS)}, port)
    base = f"http://127.0.0.1:{port}"
    try:
        print(f"model {args.model}, {args.size}x{args.size}, {args.steps} steps, guidance 7, previews at "
              f"{PREVIEW_FPS:g} fps, device {os.environ.get('CUDA_VISIBLE_DEVICES', 'auto')}")
        asyncio.run(overhead(base, make_token(base), models, params, args.runs))
        # Jobs long enough that the burst arrives while they wait, so the cap is what decides.
        asyncio.run(burst(base, 10, 5, {**params, "width": 128, "height": 128, "steps": 30}, server.pid))
    finally:
        guard.stop(server, 30)


if __name__ == "__main__":
    main()
