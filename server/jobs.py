"""Generation jobs: persisted, queued fairly, run on the engine, reported on ``job:<id>``.

The engine (inference/) runs one job per worker thread; this service keeps its
own fair queue in front of it and hands a job over only when a worker is free,
so the order of work is decided here, across users, not first come first served.
Events from the engine arrive on the loop and leave through one publisher
coroutine, so a job's events reach the hub in the order they happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from inference.engine import Engine
from inference.errors import GenerationCancelled, InferenceError, InvalidRequest
from inference.events import JobEvent, JobResult, Preview, Progress, Started
from inference.requests import (MAX_BATCH, MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SIDE_PX, MAX_STEPS, MIN_SIDE_PX,
                                SIDE_MULTIPLE_PX, GenerationRequest)
from inference.samplers import SAMPLERS
from server.auth import Principal
from server.blobs import BlobStore
from server.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from server.executors import Executors
from server.fairqueue import Entry, FairQueue
from server.hub import Hub
from server.images import make_thumbnail
from server.store.models import GeneratedImage, GenerationJob, User, iso, utcnow

log = logging.getLogger(__name__)

REQUEST_FIELDS = ("kind", "model", "prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed",
                  "sampler", "batch", "strength", "loras")
LIST_PAGE_MAX = 50
RESTART_MESSAGE = "The server restarted while this job was running; run it again."
# On shutdown, how long the dispatcher may take to finish starting a job.
CLOSE_WAIT_SECS = 10.0


# (principal, job id) -> may this principal watch the job and see its images?
WatchGrant = Callable[[Principal | None, str], Awaitable[bool]]
# (principal, image) -> may this principal see this one image (e.g. it is published in a visible post)?
ImageGrant = Callable[[Principal | None, GeneratedImage], Awaitable[bool]]


class QueueFull(AppError):
    code = "queue_full"
    status = 429



def image_json(image: GeneratedImage) -> dict[str, Any]:
    return {
        "id": image.id, "job": image.job_id, "owner": image.owner_id, "width": image.width,
        "height": image.height, "seed": image.seed, "parameters": image.parameters,
        "url": f"/api/images/{image.id}/file", "thumb_url": f"/api/images/{image.id}/thumb",
        "created_at": iso(image.created_at),
    }


def image_ref(image: GeneratedImage) -> dict[str, Any]:
    """How an event or a job names one of its images."""
    return {"id": image.id, "url": f"/api/images/{image.id}/file", "thumb_url": f"/api/images/{image.id}/thumb",
            "width": image.width, "height": image.height, "seed": image.seed}


@dataclass
class _Live:
    """What the service knows of a job while it is queued or running (not persisted per step)."""

    owner_id: int
    public: bool
    started: float = 0.0
    step: int = 0
    total: int = 0
    engine_job: Any = None


class JobService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub, blobs: BlobStore,
                 executors: Executors, engine: Engine | None, settings: Settings):
        self._db = sessions
        self._hub = hub
        self._blobs = blobs
        self._executors = executors
        self.engine = engine
        self._settings = settings
        self._queue: FairQueue[GenerationRequest] = FairQueue()
        self._live: dict[str, _Live] = {}
        self._running: set[str] = set()
        self._places: dict[str, int] = {}
        self._reserved: dict[int, int] = {}  # per user: submissions admitted but not yet queued
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        # Other features that let more people watch a job (e.g. a collab session's members its renders).
        self._watch_grants: list[WatchGrant] = []
        self._image_grants: list[ImageGrant] = []

    def add_watch_grant(self, grant: WatchGrant) -> None:
        """Let ``grant(principal, job_id)`` admit watchers beyond the owner (and everyone, when public)."""
        self._watch_grants.append(grant)

    def add_image_grant(self, grant: ImageGrant) -> None:
        """Let ``grant(principal, image)`` show single images beyond the job's watchers."""
        self._image_grants.append(grant)

    async def _granted(self, principal: Principal | None, job_id: str) -> bool:
        for grant in self._watch_grants:
            if await grant(principal, job_id):
                return True
        return False

    # Lifecycle

    async def start(self) -> None:
        """Recover from a restart, then start dispatching."""
        await self._recover()
        self._tasks = [asyncio.create_task(self._dispatch(), name="jobs-dispatch"),
                       asyncio.create_task(self._publish(), name="jobs-publish")]

    async def close(self) -> None:
        # Stop the dispatcher between jobs, not inside one: a write cancelled mid-way can leave its
        # transaction (and the job row's lock) open until the connection is collected.
        self._closing = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks[:1], timeout=CLOSE_WAIT_SECS)
        for job_id in list(self._running):
            live = self._live.get(job_id)
            if live and live.engine_job is not None:
                live.engine_job.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _recover(self) -> None:
        async with self._db() as db:
            await db.execute(update(GenerationJob).where(GenerationJob.status == "running").values(
                status="failed", error_code="server_restarted", error_message=RESTART_MESSAGE, finished_at=utcnow()))
            await db.commit()
            queued = list(await db.scalars(
                select(GenerationJob).where(GenerationJob.status == "queued").order_by(GenerationJob.created_at)))
        for job in queued:
            init_image = None
            if job.init_image_sha256:
                init_image = await self._executors.run_io(self._blobs.read_bytes, job.init_image_sha256)
            request = GenerationRequest(**json.loads(job.settings), init_image=init_image)
            self._enqueue(job.id, job.owner_id, job.public, request)
        if queued:
            log.info("re-queued %d jobs after a restart", len(queued))
            await self._announce_places()
            self._wake.set()

    # Requests

    async def catalogue(self) -> dict[str, Any]:
        """What the model picker shows: loadable models, samplers, limits."""
        models = []
        if self.engine is not None:
            specs = await self._executors.run_io(self.engine.registry.refresh)
            models = [{"name": spec.name, "family": spec.family, "layout": spec.layout,
                       "size_bytes": spec.size_bytes, "native_size": spec.native_side}
                      for spec in sorted(self.engine.registry.specs(), key=lambda s: s.name)]
            del specs
        return {
            "models": models,
            "samplers": sorted(SAMPLERS),
            "limits": {"steps_max": MAX_STEPS, "size_min": MIN_SIDE_PX, "size_max": MAX_SIDE_PX,
                       "size_multiple": SIDE_MULTIPLE_PX, "prompt_max_chars": MAX_PROMPT_CHARS,
                       "batch_max": MAX_BATCH, "guidance_max": MAX_GUIDANCE},
        }

    def parse(self, params: dict[str, Any], init_image: bytes | None) -> GenerationRequest:
        """A validated request (concrete seed) from client fields; errors name the field."""
        if self.engine is None:
            raise Unavailable("Generation is not enabled on this server.", code="inference_disabled")
        unknown = set(params) - set(REQUEST_FIELDS) - {"public", "init_image"}
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
        if init_image is not None and len(init_image) > self._settings.max_init_image_bytes:
            raise InvalidInput(f"`init_image` must be at most {self._settings.max_init_image_bytes // 2**20} MiB.",
                               code="image_too_large")
        fields = {name: params[name] for name in REQUEST_FIELDS if name in params and params[name] is not None}
        if "model" not in fields or "prompt" not in fields:
            raise InvalidInput("`model` and `prompt` are required.")
        try:
            return self.engine.validate(GenerationRequest(**fields, init_image=init_image))
        except InvalidRequest as exc:
            raise InvalidInput(str(exc), code=exc.code) from None

    async def submit(self, user: User, params: dict[str, Any], init_image: bytes | None = None) -> dict[str, Any]:
        """Check, persist and queue a job; answers at once (the job runs later)."""
        request = self.parse(params, init_image)
        # Checked and reserved before the first await, so a burst of submissions cannot all pass the check.
        waiting = len(self._queue) + sum(self._reserved.values())
        if waiting >= self._settings.queue_max_global:
            raise QueueFull(f"The queue is full: {waiting} jobs are waiting. Try again in a moment.")
        mine = self._queue.count_for(user.id) + self._reserved.get(user.id, 0)
        if mine >= self._settings.queue_max_per_user:
            raise QueueFull(f"You already have {mine} jobs waiting, the most allowed; wait for one to finish.")
        self._reserved[user.id] = self._reserved.get(user.id, 0) + 1
        try:
            job = await self._store_job(user, request, bool(params.get("public", False)))
        finally:
            self._reserved[user.id] -= 1
            if not self._reserved[user.id]:
                del self._reserved[user.id]
        self._enqueue(job.id, user.id, job.public, request)
        await self._announce_places()
        self._wake.set()
        return self.job_json(job, [])

    async def _store_job(self, user: User, request: GenerationRequest, public: bool) -> GenerationJob:
        init_sha = None
        if request.init_image is not None:
            init_sha = await self._executors.run_io(self._blobs.put_bytes, request.init_image)
        stored = {name: getattr(request, name) for name in REQUEST_FIELDS}
        job = GenerationJob(id=uuid.uuid4().hex, owner_id=user.id, status="queued", kind=request.kind,
                            model=request.model, settings=json.dumps(stored), init_image_sha256=init_sha,
                            public=public, timings="{}")
        async with self._db() as db:
            db.add(job)
            await db.commit()
        return job

    def _enqueue(self, job_id: str, owner_id: int, public: bool, request: GenerationRequest) -> None:
        self._live[job_id] = _Live(owner_id=owner_id, public=public, total=request.steps)
        self._queue.push(Entry(job_id=job_id, user_id=owner_id, model=request.model, item=request))

    async def cancel(self, user: User, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once or a running one within a step."""
        job, images = await self._load(job_id)
        if job.owner_id != user.id:
            raise Forbidden("Only the owner may cancel a job.")
        if job.status in ("done", "failed", "cancelled"):
            raise Conflict(f"The job is already {job.status}.", code="job_finished")
        if self._queue.remove(job_id) is not None:
            await self._finish(job_id, "cancelled", event={"type": "gen.cancelled", "step": 0})
            await self._announce_places()
        else:
            live = self._live.get(job_id)
            if live is not None and live.engine_job is not None:
                live.engine_job.cancel()
        job, images = await self._load(job_id)
        return self.job_json(job, images)

    async def get(self, principal: Principal | None, job_id: str) -> dict[str, Any]:
        """A job its owner (or anyone, when public, or whom a grant admits) may see."""
        job, images = await self._load(job_id)
        if not job.public and (principal is None or principal.user.id != job.owner_id) \
                and not await self._granted(principal, job_id):
            raise NotFound(f"No job {job_id}.")  # private jobs are not revealed to others
        return self.job_json(job, images)

    async def list_mine(self, user: User, *, before: str | None = None, limit: int = 20
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """My jobs, newest first, with a cursor for older ones."""
        limit = max(1, min(limit, LIST_PAGE_MAX))
        query = select(GenerationJob).where(GenerationJob.owner_id == user.id)
        async with self._db() as db:
            if before:
                anchor = await db.get(GenerationJob, before)
                if anchor is not None:
                    query = query.where((GenerationJob.created_at < anchor.created_at) |
                                        ((GenerationJob.created_at == anchor.created_at) & (GenerationJob.id < anchor.id)))
            jobs = list(await db.scalars(query.order_by(GenerationJob.created_at.desc(), GenerationJob.id.desc())
                                         .limit(limit + 1)))
            ids = [job.id for job in jobs[:limit]]
            images = list(await db.scalars(select(GeneratedImage).where(GeneratedImage.job_id.in_(ids)))) if ids else []
        by_job: dict[str, list[GeneratedImage]] = {}
        for image in images:
            by_job.setdefault(image.job_id, []).append(image)
        page = [self.job_json(job, by_job.get(job.id, [])) for job in jobs[:limit]]
        return page, (jobs[limit - 1].id if len(jobs) > limit else None)

    async def may_watch(self, principal: Principal | None, job_id: str) -> bool:
        """``job:<id>`` is for its owner, anyone when the job is public, and whom a grant admits."""
        live = self._live.get(job_id)
        if live is not None:
            owner, public = live.owner_id, live.public
        else:
            async with self._db() as db:
                row = (await db.execute(select(GenerationJob.owner_id, GenerationJob.public)
                                        .where(GenerationJob.id == job_id))).first()
            if row is None:
                return False
            owner, public = row
        return public or (principal is not None and principal.user.id == owner) or await self._granted(principal, job_id)

    async def image(self, principal: Principal | None, image_id: str) -> dict[str, Any]:
        image = await self._image(principal, image_id)
        return image_json(image)

    async def image_bytes(self, principal: Principal | None, image_id: str, *, thumb: bool) -> tuple[str, bytes]:
        """The PNG (or WebP thumbnail) and its sha256."""
        image = await self._image(principal, image_id)
        digest = image.thumb_sha256 if thumb else image.png_sha256
        return digest, await self._executors.run_io(self._blobs.read_bytes, digest)

    async def _image(self, principal: Principal | None, image_id: str) -> GeneratedImage:
        async with self._db() as db:
            row = (await db.execute(select(GeneratedImage, GenerationJob.public)
                                    .join(GenerationJob, GenerationJob.id == GeneratedImage.job_id)
                                    .where(GeneratedImage.id == image_id))).first()
        if row is None:
            raise NotFound(f"No image {image_id}.")
        image, job_public = row
        if job_public or (principal is not None and principal.user.id == image.owner_id):
            return image
        if await self._granted(principal, image.job_id):
            return image
        for grant in self._image_grants:
            if await grant(principal, image):
                return image
        raise NotFound(f"No image {image_id}.")

    # Running

    async def _dispatch(self) -> None:
        assert self.engine is not None
        workers = len(self.engine.workers)
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and len(self._running) < workers and not self._closing:
                entry = self._queue.pop(self._is_loaded)
                await self._run(entry)
                await self._announce_places()

    def _is_loaded(self, model: str) -> bool:
        return self.engine is not None and any(model in worker.cache.resident() for worker in self.engine.workers)

    async def _run(self, entry: Entry[GenerationRequest]) -> None:
        job_id = entry.job_id
        live = self._live[job_id]
        live.started = time.perf_counter()
        self._running.add(job_id)
        async with self._db() as db:
            await db.execute(update(GenerationJob).where(GenerationJob.id == job_id)
                             .values(status="running", started_at=utcnow()))
            await db.commit()
        try:
            live.engine_job = self.engine.submit(entry.item, lambda event: self._events.put_nowait((job_id, event)),
                                                 job_id=job_id)
        except InferenceError as exc:
            await self._finish(job_id, "failed", error=(exc.code, str(exc)))
            return
        task = asyncio.create_task(self._await_result(job_id, live.engine_job, entry.item))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _await_result(self, job_id: str, engine_job: Any, request: GenerationRequest) -> None:
        try:
            result: JobResult = await engine_job
        except GenerationCancelled:
            live = self._live.get(job_id)
            await self._finish(job_id, "cancelled", event={"type": "gen.cancelled", "step": live.step if live else 0})
        except InferenceError as exc:
            await self._finish(job_id, "failed", error=(exc.code, str(exc)))
        except Exception as exc:  # the engine failed in a way it did not name; the job fails alone
            log.exception("job %s failed", job_id)
            await self._finish(job_id, "failed", error=("generation_failed", f"Generation failed: {type(exc).__name__}."))
        else:
            try:
                images = await self._store_images(job_id, result)
            except Exception:
                log.exception("storing the images of job %s failed", job_id)
                await self._finish(job_id, "failed", error=("storage_failed", "The images could not be stored."))
                return
            await self._finish(job_id, "done", timings=result.timings, images=images, event={
                "type": "gen.done", "images": [image_ref(image) for image in images],
                "seed": request.seed, "timings": result.timings,
            })

    async def _store_images(self, job_id: str, result: JobResult) -> list[GeneratedImage]:
        """Write each PNG and its thumbnail to the blob store (in parallel); the rows are added by _finish."""
        owner_id = self._live[job_id].owner_id

        async def store(generated: Any) -> GeneratedImage:
            thumb, png_sha = await asyncio.gather(self._executors.run_cpu(make_thumbnail, generated.png),
                                                  self._executors.run_io(self._blobs.put_bytes, generated.png))
            thumb_sha = await self._executors.run_io(self._blobs.put_bytes, thumb)
            return GeneratedImage(id=uuid.uuid4().hex, owner_id=owner_id, job_id=job_id, png_sha256=png_sha,
                                  thumb_sha256=thumb_sha, width=generated.width, height=generated.height,
                                  seed=generated.seed, parameters=generated.parameters)

        return list(await asyncio.gather(*(store(generated) for generated in result.images)))

    async def _finish(self, job_id: str, status: str, *, error: tuple[str, str] | None = None,
                      timings: dict[str, float] | None = None, event: dict[str, Any] | None = None,
                      images: list[GeneratedImage] = ()) -> None:
        """Persist the outcome, then (through the publisher, after the job's earlier events) announce it."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if error is not None:
            values.update(error_code=error[0], error_message=error[1][:1000])
            event = {"type": "gen.error", "code": error[0], "message": error[1]}
        if timings is not None:
            values["timings"] = json.dumps(timings)
        async with self._db() as db:
            db.add_all(images)  # one transaction: a job is never "done" without its images
            await db.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(**values))
            await db.commit()
        self._running.discard(job_id)
        self._places.pop(job_id, None)
        if event is not None:
            self._events.put_nowait((job_id, {"job": job_id, **event}))
        self._events.put_nowait((job_id, None))  # forget the live state once the events are out
        self._wake.set()

    async def _announce_places(self) -> None:
        for job_id, place in self._queue.places().items():
            if self._places.get(job_id) != place:
                self._places[job_id] = place
                await self._hub.publish(f"job:{job_id}", {"type": "gen.queued", "job": job_id, "place": place})

    async def _publish(self) -> None:
        """The one coroutine that turns engine events into hub events, in order."""
        while True:
            job_id, event = await self._events.get()
            try:
                await self._publish_one(job_id, event)
            except Exception:
                log.exception("publishing an event of job %s failed", job_id)

    async def _publish_one(self, job_id: str, event: JobEvent | dict[str, Any] | None) -> None:
        topic = f"job:{job_id}"
        live = self._live.get(job_id)
        if event is None:
            self._live.pop(job_id, None)
            return
        if isinstance(event, dict):
            await self._hub.publish(topic, event)
        elif isinstance(event, Preview):
            # Not sequenced: previews are large and stale a moment later; a reconnecting client waits for the next.
            await self._hub.publish(topic, event.to_message(), sequenced=False)
        elif isinstance(event, Progress):
            message = event.to_message()
            if live is not None:
                live.step, live.total = event.step, event.total
                elapsed = time.perf_counter() - live.started
                message["elapsed"] = round(elapsed, 3)
                message["eta"] = round(elapsed / event.step * (event.total - event.step), 3) if event.step else None
            await self._hub.publish(topic, message)
        elif isinstance(event, Started):
            await self._hub.publish(topic, event.to_message())
        # Done, Failed and Cancelled from the engine are announced by _finish, after the outcome is stored.

    # Rendering

    async def _load(self, job_id: str) -> tuple[GenerationJob, list[GeneratedImage]]:
        async with self._db() as db:
            job = await db.get(GenerationJob, job_id) if isinstance(job_id, str) and len(job_id) <= 32 else None
            if job is None:
                raise NotFound(f"No job {str(job_id)[:40]}.")
            images = list(await db.scalars(select(GeneratedImage).where(GeneratedImage.job_id == job_id)))
        return job, images

    def job_json(self, job: GenerationJob, images: list[GeneratedImage]) -> dict[str, Any]:
        settings = json.loads(job.settings)
        live = self._live.get(job.id)
        # Art jobs (server/art.py) have no steps: their total is the number of styles, their step the images so far.
        total = settings["steps"] if "steps" in settings else len(settings.get("styles", ()))
        step = live.step if live else (total if job.status == "done" else 0 if "steps" in settings else len(images))
        return {
            "id": job.id, "kind": job.kind, "model": job.model, "status": job.status, "public": job.public, **settings,
            "place": self._places.get(job.id) if job.status == "queued" else None,
            "step": step,
            "total": total,
            "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
            "images": [image_ref(image) for image in images],
            "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at), "timings": json.loads(job.timings or "{}"),
        }
