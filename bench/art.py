"""Benchmark: a 4000×3000 photo to the four art styles (figures only, not a test).

Each figure is the wall time of what the service does for one upload, median of --runs:
decode the JPEG (header checks included), orient and scale, pHash, then the four styles in
parallel on a pool of --threads threads, each encoded as PNG + WebP thumbnail.

  (1) without pre-scaling: the styles run on all 12 MP (quality preset, as a naive service would);
  (2) with pre-scaling to 1024 px: fast and quality presets;
  (3) a cache hit (in-process, and Redis when it answers): the same file again, found by its exact
      sha256 before anything is decoded (what the service does first), and a re-encoded copy, found by
      decode + scale + pHash + lookup; the service then only inserts four image rows and publishes the events.

    .venv/bin/python bench/art.py [--runs 5] [--threads 4] [--max-side 1024] [--cache-hit-only]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import redis.asyncio as redis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from inference import art  # noqa: E402
from server.worker.art import ArtKind, load_photo, render_style  # noqa: E402
from server.cache import MemoryCache, RedisCache, get_json, set_json  # noqa: E402


def make_photo(width: int = 4000, height: int = 3000) -> bytes:
    """A 4000×3000 JPEG that behaves like a photo: gradients, shapes, texture and sensor noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.dstack([90 + 100 * y / height, 140 + 60 * np.sin(x / 300), 230 - 80 * y / height])
    img[int(height * 0.65):] = np.dstack([60 + 40 * np.sin(x[int(height * 0.65):] / 40), 150 - 0 * x[int(height * 0.65):],
                                          60 + 0 * x[int(height * 0.65):]])
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    cv2.circle(img, (3000, 700), 350, (250, 220, 90), -1)
    cv2.rectangle(img, (1200, 1400), (2200, 2300), (180, 70, 50), -1)
    for _ in range(200):
        cv2.line(img, tuple(int(v) for v in rng.integers(0, width, 2) % [width, height]),
                 tuple(int(v) for v in rng.integers(0, width, 2) % [width, height]),
                 tuple(int(v) for v in rng.integers(0, 255, 3)), 3)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def four_styles(pool: ThreadPoolExecutor, data: bytes, max_side: int | None, preset: str) -> dict[str, float]:
    started = time.perf_counter()
    photo = load_photo(data, max_side if max_side else 100_000)
    prepared = time.perf_counter()
    rendered = list(pool.map(lambda style: render_style(photo.rgb, style, preset), art.STYLES))
    done = time.perf_counter()
    return {"total": done - started, "prepare": prepared - started, "styles": done - prepared,
            **{r.style: r.seconds for r in rendered}}


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def show(label: str, figures: dict[str, float]) -> None:
    per_style = "  ".join(f"{style} {figures[style]:.2f}" for style in art.STYLES)
    print(f"{label:<38} {figures['total']:7.3f} s   (decode+scale+pHash {figures['prepare']:.3f}, "
          f"styles {figures['styles']:.3f}: {per_style})")


async def cache_hit(cache, data: bytes, max_side: int, runs: int) -> tuple[float, float]:
    """Median seconds of a hit found (a) by the exact sha256 of the upload, the service's first lookup
    (server/worker/art.py: the same file again is never decoded), and (b) by the pHash, which needs the
    photo decoded, scaled and hashed (a re-encoded copy of a photo)."""
    photo = load_photo(data, max_side)
    digest = hashlib.sha256(data).hexdigest()
    keys = [ArtKind._key("sha", digest, "fast", max_side), ArtKind._key("phash", photo.phash, "fast", max_side)]
    for key in keys:
        await set_json(cache, key, {style: {"png": "x" * 64} for style in art.STYLES}, 60)
    by_sha, by_phash = [], []
    for _ in range(runs):
        started = time.perf_counter()
        key = ArtKind._key("sha", hashlib.sha256(data).hexdigest(), "fast", max_side)
        assert await get_json(cache, key) is not None
        by_sha.append(time.perf_counter() - started)
        started = time.perf_counter()
        photo = await asyncio.to_thread(load_photo, data, max_side)
        assert await get_json(cache, ArtKind._key("phash", photo.phash, "fast", max_side)) is not None
        by_phash.append(time.perf_counter() - started)
    for key in keys:
        await cache.delete(key)
    return statistics.median(by_sha), statistics.median(by_phash)


def show_hit(label: str, figures: tuple[float, float]) -> None:
    print(f"{'cache hit, ' + label:<38} {figures[0] * 1000:7.1f} ms by the exact sha256 (the service's path); "
          f"{figures[1] * 1000:7.1f} ms by pHash (decode + scale + pHash + lookup: a re-encoded copy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--unscaled-runs", type=int, default=3, help="the 12 MP runs are slow")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--cache-hit-only", action="store_true", help="only (3), the cache hit")
    parser.add_argument("--deadline-secs", type=float, default=1800, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def styles(args: argparse.Namespace, data: bytes) -> None:
    with ThreadPoolExecutor(args.threads) as pool:
        four_styles(pool, data, args.max_side, "fast")  # warm-up
        for preset in ("quality", "fast"):
            show(f"no pre-scaling (12 MP), {preset}",
                 median([four_styles(pool, data, None, preset) for _ in range(args.unscaled_runs)]))
        for preset in ("fast", "quality"):
            show(f"pre-scaled to {args.max_side} px, {preset}",
                 median([four_styles(pool, data, args.max_side, preset) for _ in range(args.runs)]))


def run(args: argparse.Namespace) -> None:
    data = make_photo()
    print(f"photo: 4000×3000 JPEG, {len(data) / 1e6:.1f} MB; CPU cores: {os.cpu_count()}; OpenCV {cv2.__version__}; "
          f"pool: {args.threads} threads; median of {args.runs} runs ({args.unscaled_runs} unscaled)")
    if not args.cache_hit_only:
        styles(args, data)
    show_hit("in-process cache", asyncio.run(cache_hit(MemoryCache(), data, args.max_side, args.runs)))

    async def on_redis() -> tuple[float, float]:
        client = redis.from_url(os.environ.get("VA_REDIS_URL", "redis://127.0.0.1:6379/0"),
                                socket_connect_timeout=5, socket_timeout=30)
        try:
            await client.ping()  # RedisCache would fall back to memory without Redis: measure only a live one
            return await cache_hit(RedisCache(client, "va:bench:"), data, args.max_side, args.runs)
        finally:
            await client.aclose()

    try:
        show_hit("Redis", asyncio.run(on_redis()))
    except RedisError as exc:
        print(f"cache hit, Redis: not measured ({exc})")


if __name__ == "__main__":
    main()
