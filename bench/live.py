"""Benchmark: the Live page's cost. With 20 public jobs rendering and 50 people watching Live, how many
preview frames the web process sends, and whether the renderer's steps get slower than with nobody watching.

A web process (`run.py serve`, no worker) on SQLite + Redis serves Live. This process plays the renderer of 20
public jobs, as a worker runs them: a device thread does a fixed amount of numpy work per step, and each step's
events — every job's `gen.progress` and `gen.preview` (a real 256 px WebP) — go through one publisher coroutine and
the same `RedisHub` a worker uses (the work is sized for `--steps-per-sec`; the engine caps previews at 8 a second
per job). Phases alternate in one run: nobody watching, then 50 WebSocket clients (in a child process, connected
throughout) subscribed to `live:all`. The step time is the device thread's (what watchers could slow down: the
web process and the sockets share this machine's cores), medians per phase and over rounds. Figures only, not a test.

    .venv/bin/python bench/live.py [--jobs 20] [--watchers 50] [--seconds 10] [--rounds 3]

Needs Redis on 127.0.0.1:6379 (keys under a fresh prefix, deleted afterwards).
"""

from __future__ import annotations

import os

# The renderer's work is one thread's, as an engine's device thread: numpy's BLAS pool would take every core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import msgpack  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from bench.http_api import free_port, make_token, start_server  # noqa: E402
from inference.demo_model import DEMO_MODEL_NAME, build_demo_model  # noqa: E402
from server import redis_client  # noqa: E402
from server.hub import RedisHub  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
MATRIX = 256  # numpy work per step: (MATRIX x MATRIX) @ (MATRIX x MATRIX), repeated to fill the step
CHILD_READY = "ready"


def preview_webp(seed: int) -> bytes:
    """A 256 px WebP like a preview frame (a smooth gradient with noise, ~10 KB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:256, 0:256]
    rgb = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.float32) + rng.normal(0, 24, (256, 256, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "WEBP", quality=70)
    return out.getvalue()


def calibrate(step_secs: float) -> int:
    """How many matmuls take about `step_secs` here (the renderer's fixed work per step)."""
    a = np.random.default_rng(0).random((MATRIX, MATRIX), dtype=np.float32)
    for _ in range(5):
        a @ a  # warm
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20):
            a @ a
        rounds.append((time.perf_counter() - started) / 20)
    return max(1, round(step_secs / statistics.median(rounds)))


async def render(hub: RedisHub, jobs: list[str], frames: list[bytes], seconds: float, matmuls: int) -> list[float]:
    """Steps for `seconds`, as a worker runs them: a device thread does the work and hands each step's events to
    the loop (`call_soon_threadsafe`), where one publisher coroutine sends them through the hub. The step time is
    the device thread's: what a watcher could slow down."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    a = np.random.default_rng(1).random((MATRIX, MATRIX), dtype=np.float32)
    stop = time.perf_counter() + seconds

    def device() -> list[float]:
        times, step = [], 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            for _ in range(matmuls):
                a @ a
            step += 1
            times.append(time.perf_counter() - started)
            loop.call_soon_threadsafe(events.put_nowait, step)
        loop.call_soon_threadsafe(events.put_nowait, None)
        return times

    async def publisher() -> None:
        while (step := await events.get()) is not None:
            for n, job in enumerate(jobs):
                topic = f"job:{job}"
                await hub.publish(topic, {"type": "gen.progress", "job": job, "step": step, "total": 10_000})
                await hub.publish(topic, {"type": "gen.preview", "job": job, "step": step, "total": 10_000,
                                          "mime": "image/webp", "image": frames[n], "at": time.time()},
                                  sequenced=False)

    sending = asyncio.create_task(publisher())
    times = await loop.run_in_executor(None, device)
    await sending
    return times


async def watchers_child(base: str, count: int) -> None:
    """`count` sockets; commands on stdin: `sub` / `unsub` (all of them, `live:all`), `report` (prints the
    frames each received since the last report, and the seconds), `quit`."""
    from websockets.asyncio.client import connect

    url = base.replace("http://", "ws://") + "/ws"
    received = [0] * count
    sockets = [await connect(url, additional_headers={"Origin": base}, max_size=None, compression=None)
               for _ in range(count)]

    async def read(i: int, ws) -> None:
        while True:
            frame = msgpack.unpackb(await ws.recv(), raw=False)
            for event in frame if isinstance(frame, list) else [frame]:
                if event.get("type") == "live.preview":
                    received[i] += 1

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    loop = asyncio.get_running_loop()
    print(CHILD_READY, flush=True)
    last, since = list(received), time.perf_counter()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command in ("sub", "unsub"):
            for ws in sockets:
                await ws.send(msgpack.packb({"op": command, "topic": "live:all"}))
        elif command == "report":
            now = time.perf_counter()
            print(json.dumps({"frames": [r - s for r, s in zip(received, last)], "seconds": now - since}), flush=True)
            last, since = list(received), now
        else:
            break
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()


class Watchers:
    """The child process of watchers, driven over its stdin."""

    def __init__(self, base: str, count: int):
        self.process = guard.track(subprocess.Popen(
            [sys.executable, __file__, "--child", base, "--watchers", str(count)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        if self.process.stdout.readline().strip() != CHILD_READY:
            raise RuntimeError("the watchers did not connect")

    def tell(self, command: str) -> dict | None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline()) if command == "report" else None

    def stop(self) -> None:
        self.tell("quit")
        guard.stop(self.process, 10)


async def measure(args: argparse.Namespace, base: str, jobs: list[str], prefix: str) -> None:
    client = redis_client.connect(REDIS_URL)
    hub = await RedisHub(client, prefix).start()
    frames = [preview_webp(n) for n in range(len(jobs))]
    matmuls = calibrate(1.0 / args.steps_per_sec)
    print(f"{len(jobs)} public jobs rendering, a step = {matmuls} matmuls of {MATRIX}² + {2 * len(jobs)} events "
          f"(previews {len(frames[0]) // 1024} KiB WebP); {args.watchers} watchers on live:all; "
          f"{args.seconds:g} s per phase, {args.rounds} rounds; CPUs: {os.cpu_count()}")
    await render(hub, jobs, frames, 2, matmuls)  # warm-up
    watchers = await asyncio.get_running_loop().run_in_executor(None, Watchers, base, args.watchers)
    without, with_, sent, per_watcher = [], [], [], []
    try:
        for round_ in range(args.rounds):
            quiet = await render(hub, jobs, frames, args.seconds, matmuls)
            watchers.tell("sub")
            await render(hub, jobs, frames, 1.5, matmuls)  # the feed starts and follows the jobs
            watchers.tell("report")
            watched = await render(hub, jobs, frames, args.seconds, matmuls)
            report = watchers.tell("report")
            watchers.tell("unsub")
            await render(hub, jobs, frames, 1.0, matmuls)  # the feed lets go
            got = report["frames"]
            without.append(statistics.median(quiet))
            with_.append(statistics.median(watched))
            sent.append(sum(got) / report["seconds"])
            per_watcher.append(statistics.median(got) / report["seconds"])
            print(f"round {round_ + 1}: step {without[-1] * 1000:.1f} ms unwatched, {with_[-1] * 1000:.1f} ms watched; "
                  f"frames sent {sent[-1]:.0f}/s ({per_watcher[-1]:.1f}/s per watcher, "
                  f"{per_watcher[-1] / len(jobs):.2f}/s per tile); "
                  f"previews published {len(quiet) * len(jobs) / args.seconds:.0f}/s")
    finally:
        watchers.stop()
    med = statistics.median
    print(f"\nmedian of {args.rounds} rounds: renderer step {med(without) * 1000:.1f} ms with nobody watching, "
          f"{med(with_) * 1000:.1f} ms with {args.watchers} watchers ({(med(with_) / med(without) - 1) * 100:+.1f} %); "
          f"preview frames sent {med(sent):.0f}/s in all, {med(per_watcher):.1f}/s per watcher "
          f"({med(per_watcher) / len(jobs):.2f}/s per tile, cap {args.tile_fps:g})")
    await hub.close()
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def run(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="va-bench-live-"))
    build_demo_model(data / "models" / DEMO_MODEL_NAME)
    prefix = f"va-bench-live-{uuid.uuid4().hex[:8]}:"
    env = {"VA_DATA_DIR": str(data), "VA_REDIS_URL": REDIS_URL, "VA_REDIS_PREFIX": prefix,
           "VA_INFERENCE_ENABLED": "false", "VA_QUEUE_MAX_PER_USER": str(args.jobs),
           "VA_QUEUE_MAX_GLOBAL": str(args.jobs), "VA_LIVE_TILE_FPS": str(args.tile_fps)}
    guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT, env={**os.environ, **env})
    port = free_port()
    server = start_server(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        token = make_token(base)
        jobs = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for n in range(args.jobs):
                made = http.post("/api/jobs", json={"model": DEMO_MODEL_NAME, "prompt": f"a lighthouse, take {n}",
                                                    "width": 256, "height": 256, "steps": 150, "public": True})
                made.raise_for_status()
                jobs.append(made.json()["job"]["id"])
        # No worker takes them: mark them running as a worker's `records.start` would.
        with sqlite3.connect(data / "visionary.db") as db:
            db.executemany("UPDATE jobs SET status = 'running', started_at = CURRENT_TIMESTAMP, worker_id = 'bench', "
                           "attempts = 1 WHERE id = ?", [(job,) for job in jobs])
        asyncio.run(measure(args, base, jobs, prefix))
    finally:
        guard.stop(server, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-sec", type=float, default=8, help="the renderer's pace (previews per job)")
    parser.add_argument("--tile-fps", type=float, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--deadline-secs", type=float, default=900)
    args = parser.parse_args()
    if args.child:
        asyncio.run(watchers_child(args.child, args.watchers))
        return
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


if __name__ == "__main__":
    main()
