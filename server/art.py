"""Art studio: a photo becomes four styles (inference/art.py), reported on ``job:<id>`` as each is ready.

An art job needs no model and no GPU: the upload is checked and scaled on the
service's own thread pool, the four styles run there in parallel (OpenCV releases
the GIL), and each result is stored as an image and published (``art.result``) the
moment it is ready; ``gen.done`` follows the fourth. Results are cached by the
photo's 256-bit perceptual hash plus the preset and the working size, so the same
photo uploaded again, even re-encoded, is answered from the cache at once.

A cache hit stores new image rows for the new job that point at the blobs already
stored (the blob store is content-addressed, so nothing is encoded or copied): each
job keeps its own images, and another user's job is never revealed by a hit.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from inference import art
from server.blobs import BlobStore
from server.cache import Cache, get_json, set_json
from server.errors import InvalidInput, PayloadTooLarge
from server.executors import Executors
from server.hub import Hub
from server.images import THUMBNAIL_SIDE_PX, THUMBNAIL_WEBP_QUALITY, open_checked
from server.jobs import image_ref
from server.store.models import GeneratedImage, GenerationJob, User, utcnow

log = logging.getLogger(__name__)

ART_MODEL = "opencv"
PRESETS = tuple(art.PRESETS)
# Filters need a neighbourhood to work with; a 1×1 "photo" is a mistake, not art.
MIN_INPUT_SIDE_PX = 32
# Longer sides are refused from the header, whatever the pixel count (a 30,000×10 strip is no photo).
MAX_INPUT_SIDE_PX = 12_000
# PNG compression 1–9: 3 is within a few per cent of 9 in size at a fraction of the time.
PNG_COMPRESSION = 3
# Near-duplicates: pHashes this many bits apart (of 256) are the same photo re-encoded; different photos
# differ in about half their bits. The recent hashes per preset are kept in a bounded list for this search.
NEAR_DUPLICATE_BITS = 12
RECENT_HASHES_MAX = 256


@dataclass(frozen=True)
class Photo:
    """A checked, upright, scaled RGB photo and its perceptual hash."""

    rgb: np.ndarray
    phash: str
    source_size: tuple[int, int]


@dataclass(frozen=True)
class Rendered:
    style: str
    png: bytes
    thumb: bytes
    width: int
    height: int
    seconds: float


def load_photo(data: bytes, max_side_px: int) -> Photo:
    """Check an upload from its header (format, sides, pixel count), then decode, orient, flatten and scale it."""
    image = open_checked(data, min_side_px=MIN_INPUT_SIDE_PX, max_side_px=MAX_INPUT_SIDE_PX)
    source_size = image.size
    rgb = art.to_rgb_array(image, max_side_px)
    return Photo(rgb=rgb, phash=art.perceptual_hash(rgb), source_size=source_size)


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


class ArtService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub, blobs: BlobStore, cache: Cache,
                 executors: Executors, settings: Settings):
        self._db = sessions
        self._hub = hub
        self._blobs = blobs
        self._cache = cache
        self._executors = executors
        self._settings = settings
        # Its own pool: art never waits behind password hashing or blob I/O, nor they behind art.
        self._pool = ThreadPoolExecutor(settings.art_threads, thread_name_prefix="va-art")
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def submit(self, user: User, data: bytes, preset: str | None = None) -> dict[str, Any]:
        """Check the photo, store the job and start it; answers at once, results follow on job:<id>."""
        preset = preset or "fast"
        if preset not in PRESETS:
            raise InvalidInput(f"`preset` must be one of {', '.join(PRESETS)} but is {preset[:40]!r}.",
                               code="invalid_preset")
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InvalidInput("Send a photo: the body is empty.", code="not_an_image")
        if len(data) > self._settings.art_max_upload_bytes:
            raise PayloadTooLarge(f"The photo is {len(data):,} bytes; at most "
                                  f"{self._settings.art_max_upload_bytes:,} are accepted.")
        max_side = self._settings.art_max_side_px
        photo = await self._in_pool(load_photo, bytes(data), max_side)
        cached = await self._lookup(photo.phash, preset, max_side)
        height, width = photo.rgb.shape[:2]
        settings = {"preset": preset, "max_side": max_side, "styles": list(art.STYLES), "width": width,
                    "height": height, "source_width": photo.source_size[0], "source_height": photo.source_size[1],
                    "phash": photo.phash, "cached": cached is not None}
        job = GenerationJob(id=uuid.uuid4().hex, owner_id=user.id, status="running", kind="art", model=ART_MODEL,
                            settings=json.dumps(settings), public=False, timings="{}", started_at=utcnow())
        async with self._db() as db:
            db.add(job)
            await db.commit()
        runner = self._replay(job.id, user.id, preset, cached) if cached is not None else \
            self._run(job.id, user.id, photo, preset)
        task = asyncio.create_task(runner, name=f"art-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self._job_json(job)

    # The cache: exact hash first, then a near-duplicate among the recent hashes of that preset and size.

    @staticmethod
    def _key(phash: str, preset: str, max_side: int) -> str:
        return f"art:v1:{preset}:{max_side}:{phash}"

    async def _lookup(self, phash: str, preset: str, max_side: int) -> dict[str, Any] | None:
        hit = await get_json(self._cache, self._key(phash, preset, max_side))
        if hit is not None:
            return hit
        recent = await get_json(self._cache, f"art:v1:recent:{preset}:{max_side}") or []
        near = min(recent, key=lambda other: art.hamming(phash, other), default=None)
        if near is not None and art.hamming(phash, near) <= NEAR_DUPLICATE_BITS:
            return await get_json(self._cache, self._key(near, preset, max_side))
        return None

    async def _remember(self, phash: str, preset: str, max_side: int, results: dict[str, Any]) -> None:
        ttl = self._settings.art_cache_ttl_secs
        await set_json(self._cache, self._key(phash, preset, max_side), results, ttl)
        # Read-modify-write: two processes racing may drop one hash from the list, which costs a miss, no more.
        recent_key = f"art:v1:recent:{preset}:{max_side}"
        recent = [h for h in (await get_json(self._cache, recent_key) or []) if h != phash]
        await set_json(self._cache, recent_key, [phash, *recent][:RECENT_HASHES_MAX], ttl)

    # Running

    async def _run(self, job_id: str, owner_id: int, photo: Photo, preset: str) -> None:
        started = time.perf_counter()
        topic = f"job:{job_id}"
        await self._hub.publish(topic, {"type": "gen.started", "job": job_id, "model": ART_MODEL})
        pending = [asyncio.ensure_future(self._in_pool(render_style, photo.rgb, style, preset))
                   for style in art.STYLES]
        images: dict[str, GeneratedImage] = {}
        timings: dict[str, float] = {}
        try:
            for next_done in asyncio.as_completed(pending):
                rendered: Rendered = await next_done
                png_sha = await self._executors.run_io(self._blobs.put_bytes, rendered.png)
                thumb_sha = await self._executors.run_io(self._blobs.put_bytes, rendered.thumb)
                image = await self._add_image(job_id, owner_id, rendered.style, preset, png_sha, thumb_sha,
                                              rendered.width, rendered.height)
                images[rendered.style] = image
                timings[rendered.style] = round(rendered.seconds, 3)
                await self._publish_result(job_id, rendered.style, image, cached=False)
        except asyncio.CancelledError:
            for future in pending:
                future.cancel()
            raise
        except Exception as exc:
            for future in pending:
                future.cancel()
            log.exception("art job %s failed", job_id)
            await self._finish(job_id, "failed", {"type": "gen.error", "code": "art_failed",
                                                  "message": f"The filters failed: {type(exc).__name__}."})
            return
        timings["total"] = round(time.perf_counter() - started, 3)
        await self._remember(photo.phash, preset, self._settings.art_max_side_px, {
            style: {"png": image.png_sha256, "thumb": image.thumb_sha256, "width": image.width,
                    "height": image.height} for style, image in images.items()})
        await self._finish(job_id, "done", self._done_event(job_id, images, timings, cached=False), timings)

    async def _replay(self, job_id: str, owner_id: int, preset: str, cached: dict[str, Any]) -> None:
        """A cache hit: the four results at once, as new images of this job over the blobs already stored."""
        started = time.perf_counter()
        await self._hub.publish(f"job:{job_id}", {"type": "gen.started", "job": job_id, "model": ART_MODEL})
        images: dict[str, GeneratedImage] = {}
        for style in art.STYLES:
            entry = cached[style]
            image = await self._add_image(job_id, owner_id, style, preset, entry["png"], entry["thumb"],
                                          entry["width"], entry["height"])
            images[style] = image
            await self._publish_result(job_id, style, image, cached=True)
        timings = {"total": round(time.perf_counter() - started, 3)}
        await self._finish(job_id, "done", self._done_event(job_id, images, timings, cached=True), timings)

    async def _add_image(self, job_id: str, owner_id: int, style: str, preset: str, png_sha: str, thumb_sha: str,
                         width: int, height: int) -> GeneratedImage:
        image = GeneratedImage(id=uuid.uuid4().hex, owner_id=owner_id, job_id=job_id, png_sha256=png_sha,
                               thumb_sha256=thumb_sha, width=width, height=height, seed=0,
                               parameters=f"Art studio: {style}, preset: {preset}, filters: OpenCV {cv2.__version__}")
        async with self._db() as db:
            db.add(image)
            await db.commit()
        return image

    async def _publish_result(self, job_id: str, style: str, image: GeneratedImage, *, cached: bool) -> None:
        await self._hub.publish(f"job:{job_id}", {"type": "art.result", "job": job_id, "style": style,
                                                  "image": image_ref(image), "cached": cached})

    @staticmethod
    def _done_event(job_id: str, images: dict[str, GeneratedImage], timings: dict[str, float], *,
                    cached: bool) -> dict[str, Any]:
        return {"type": "gen.done", "job": job_id, "cached": cached, "timings": timings, "seed": 0,
                "images": [{**image_ref(images[style]), "style": style} for style in art.STYLES]}

    async def _finish(self, job_id: str, status: str, event: dict[str, Any],
                      timings: dict[str, float] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "timings": json.dumps(timings or {})}
        if event["type"] == "gen.error":
            values.update(error_code=event["code"], error_message=event["message"][:1000])
        async with self._db() as db:
            await db.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(**values))
            await db.commit()
        await self._hub.publish(f"job:{job_id}", event)

    @staticmethod
    def _job_json(job: GenerationJob) -> dict[str, Any]:
        settings = json.loads(job.settings)
        return {"id": job.id, "kind": job.kind, "model": job.model, "status": job.status, "public": job.public,
                **settings, "step": 0, "total": len(art.STYLES), "images": [], "error": None}
