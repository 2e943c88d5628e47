"""Art-studio jobs on a worker: a photo becomes four styles (inference/art.py), each shown when ready.

An art job needs no model and no GPU: the photo is decoded, oriented and scaled on
the kind's own thread pool, the four styles run there in parallel (OpenCV releases
the GIL), and each result is stored and published (``art.result``) the moment it
is ready; ``gen.done`` follows the fourth. Results are cached (the shared `Cache`:
Redis or in-process) under the photo's exact sha256 — so the same file again is
answered without decoding it — and under its 256-bit perceptual hash plus preset
and working size, with a near-duplicate search over the recent hashes, since a
re-encoded photo flips a few bits.

A cache hit stores new image rows for the new job over the blobs already stored
(the blob store is content-addressed, so nothing is encoded or copied): each job
keeps its own images, and another user's job is never revealed by a hit.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import cv2
import numpy as np
from PIL import Image

from config import Settings
from inference import art
from inference.art_names import ART_MODEL, STYLES
from inference.events import GeneratedImage as ProducedImage
from server.cache import Cache, get_json, set_json
from server.errors import AppError
from server.images import THUMBNAIL_SIDE_PX, THUMBNAIL_WEBP_QUALITY, open_checked
from server.jobs.kinds import MAX_PHOTO_SIDE_PX, MIN_PHOTO_SIDE_PX
from server.jobs.service import image_ref
from server.store.models import GeneratedImage
from server.worker.kinds import JobContext, Outcome, StoredImage

T = TypeVar("T")
# PNG compression 1–9: 3 is within a few per cent of 9 in size at a fraction of the time.
PNG_COMPRESSION = 3
# Near-duplicates: pHashes this many bits apart (of 256) are the same photo re-encoded; different photos
# differ in about half their bits. The recent hashes per preset are kept in a bounded list for this search.
NEAR_DUPLICATE_BITS = 12
RECENT_HASHES_MAX = 256
CACHE_VERSION = "art:v2"


@dataclass(frozen=True)
class Photo:
    """A checked, upright, scaled RGB photo and its perceptual hash."""

    rgb: np.ndarray
    phash: str


@dataclass(frozen=True)
class Rendered:
    style: str
    png: bytes
    thumb: bytes
    width: int
    height: int
    seconds: float


def load_photo(data: bytes, max_side_px: int) -> Photo:
    """Decode, orient, flatten and scale a photo whose header the web already checked (blocking)."""
    image = open_checked(data, min_side_px=MIN_PHOTO_SIDE_PX, max_side_px=MAX_PHOTO_SIDE_PX)
    rgb = art.to_rgb_array(image, max_side_px)
    return Photo(rgb=rgb, phash=art.perceptual_hash(rgb))


def render_style(rgb: np.ndarray, style: str, preset: str) -> Rendered:
    """One style, encoded as a PNG and a WebP thumbnail (blocking: runs on the art pool)."""
    started = time.perf_counter()
    out = art.render(rgb, style, preset)
    ok, png = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError(f"PNG encoding of {style} failed")
    thumb_image = Image.fromarray(out)
    thumb_image.thumbnail((THUMBNAIL_SIDE_PX, THUMBNAIL_SIDE_PX), Image.Resampling.LANCZOS)
    thumb = io.BytesIO()
    thumb_image.save(thumb, format="WEBP", quality=THUMBNAIL_WEBP_QUALITY)
    return Rendered(style=style, png=png.tobytes(), thumb=thumb.getvalue(), width=out.shape[1],
                    height=out.shape[0], seconds=time.perf_counter() - started)


def parameters(style: str, preset: str) -> str:
    # The web side reads the style back from this text (server/jobs/service.job_image_ref): keep the prefix.
    return f"Art studio: {style}, preset: {preset}, filters: OpenCV {cv2.__version__}"


class ArtKind:
    kinds = ("art",)

    def __init__(self, cache: Cache, settings: Settings):
        self._cache = cache
        self._settings = settings
        # Its own pool: art never waits behind password hashing or blob I/O, nor they behind art.
        self._pool = ThreadPoolExecutor(settings.art_threads, thread_name_prefix="va-art")
        self._stopped: set[str] = set()

    def loaded_models(self) -> set[str]:
        return {ART_MODEL}  # nothing to load: its jobs are always welcome here

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def stop(self, job_id: str, keep: bool = False) -> None:  # a partial art job is not kept
        self._stopped.add(job_id)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, context: JobContext) -> Outcome:
        job_id = context.job.id
        try:
            return await self._run(context)
        finally:
            self._stopped.discard(job_id)

    async def _run(self, context: JobContext) -> Outcome:
        job_id = context.job.id
        preset, max_side = context.settings["preset"], context.settings["max_side"]
        started = time.perf_counter()
        context.emit({"type": "gen.started", "job": job_id, "model": context.job.model})
        photo_key = hashlib.sha256(context.input_image or b"").hexdigest()
        cached = await get_json(self._cache, self._key("sha", photo_key, preset, max_side))
        photo = None
        if cached is None:
            try:
                photo = await self._in_pool(load_photo, context.input_image, max_side)
            except AppError as exc:
                return Outcome.failed(exc.code, exc.message)
            cached = await self._near(photo.phash, preset, max_side)
        images: dict[str, GeneratedImage] = {}
        timings: dict[str, float] = {}
        if cached is not None:
            for style in STYLES:
                entry = cached[style]
                image = await context.reuse_image(StoredImage(entry["png"], entry["thumb"], entry["width"],
                                                              entry["height"], 0, parameters(style, preset)))
                if image is None:
                    return Outcome.failed("worker_lost", "Another worker took the job over.")
                images[style] = image
                self._publish(context, style, image, cached=True)
        else:
            assert photo is not None
            pending = [asyncio.ensure_future(self._in_pool(render_style, photo.rgb, style, preset))
                       for style in STYLES]
            try:
                for next_done in asyncio.as_completed(pending):
                    rendered: Rendered = await next_done
                    if job_id in self._stopped:
                        return Outcome("cancelled", step=len(images))
                    image = await context.store_image(
                        ProducedImage(rendered.png, rendered.width, rendered.height, 0,
                                      parameters(rendered.style, preset)), rendered.thumb)
                    if image is None:
                        return Outcome.failed("worker_lost", "Another worker took the job over.")
                    images[rendered.style] = image
                    timings[rendered.style] = round(rendered.seconds, 3)
                    self._publish(context, rendered.style, image, cached=False)
            finally:
                for future in pending:
                    future.cancel()
            results = {style: {"png": image.png_sha256, "thumb": image.thumb_sha256, "width": image.width,
                               "height": image.height} for style, image in images.items()}
            await self._remember(photo_key, photo.phash, preset, max_side, results)
        timings["total"] = round(time.perf_counter() - started, 3)
        return Outcome("done", timings=timings, event={
            "cached": cached is not None, "seed": 0,
            "images": [{**image_ref(images[style]), "style": style} for style in STYLES]})

    def _publish(self, context: JobContext, style: str, image: GeneratedImage, *, cached: bool) -> None:
        context.emit({"type": "art.result", "job": context.job.id, "style": style, "image": image_ref(image),
                      "cached": cached})

    # The cache: the exact file first, then the perceptual hash, then a near duplicate among the recent hashes.

    @staticmethod
    def _key(kind: str, digest: str, preset: str, max_side: int) -> str:
        return f"{CACHE_VERSION}:{kind}:{preset}:{max_side}:{digest}"

    async def _near(self, phash: str, preset: str, max_side: int) -> dict[str, Any] | None:
        hit = await get_json(self._cache, self._key("phash", phash, preset, max_side))
        if hit is not None:
            return hit
        recent = await get_json(self._cache, self._key("recent", "", preset, max_side)) or []
        near = min(recent, key=lambda other: art.hamming(phash, other), default=None)
        if near is not None and art.hamming(phash, near) <= NEAR_DUPLICATE_BITS:
            return await get_json(self._cache, self._key("phash", near, preset, max_side))
        return None

    async def _remember(self, photo_key: str, phash: str, preset: str, max_side: int,
                        results: dict[str, Any]) -> None:
        ttl = self._settings.art_cache_ttl_secs
        await set_json(self._cache, self._key("sha", photo_key, preset, max_side), results, ttl)
        await set_json(self._cache, self._key("phash", phash, preset, max_side), results, ttl)
        # Read-modify-write: two workers racing may drop one hash from the list, which costs a miss, no more.
        recent_key = self._key("recent", "", preset, max_side)
        recent = [h for h in (await get_json(self._cache, recent_key) or []) if h != phash]
        await set_json(self._cache, recent_key, [phash, *recent][:RECENT_HASHES_MAX], ttl)
