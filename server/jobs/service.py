"""Jobs as the web sees them: checked, stored, queued fairly, watched, cancelled, listed.

Every kind (txt2img, img2img, art) has this one lifecycle: the row is stored
`queued`, the queue admits it under the caps, a worker (`server.worker`, in this
process or another) runs it and reports on ``job:<id>``. Nothing here imports
torch or OpenCV: a web process that runs no engine serves jobs all the same.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable

from redis.exceptions import RedisError

from config import Settings
from inference.requests import MAX_BATCH, MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SIDE_PX, MAX_STEPS, MIN_SIDE_PX, \
    SIDE_MULTIPLE_PX
from inference.sampler_names import SAMPLERS
from server.auth import Principal
from server.blobs import BlobStore
from server.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from server.executors import Executors
from server.hub import Hub
from server.jobs.kinds import MASK_BLOB, JobKinds, total_steps
from server.jobs.queue import JobQueue, Lane, QueuedJob
from server.jobs.records import FINISHED, JobRecords
from server.store.models import GeneratedImage, GenerationJob, User, iso
from server.topics import TopicPolicy

log = logging.getLogger(__name__)

LIST_PAGE_MAX = 50
JOB_ID_MAX_CHARS = 32

# (principal, job id) -> may this principal watch the job and see its images?
WatchGrant = Callable[[Principal | None, str], Awaitable[bool]]
# (principal, image) -> may this principal see this one image (e.g. it is published in a visible post)?
ImageGrant = Callable[[Principal | None, GeneratedImage], Awaitable[bool]]
# (principal, job id) -> is the job withheld from this principal though public (e.g. its post was hidden)?
JobGuard = Callable[[Principal | None, str], Awaitable[bool]]


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


# An art image's parameters text names its style (server/worker/art.py writes "Art studio: <style>, ...").
_ART_STYLE = re.compile(r"Art studio: ([a-z_]+),")


def job_image_ref(job: GenerationJob, image: GeneratedImage) -> dict[str, Any]:
    """`image_ref`, plus which style an art job's image is, so a reloaded page can lay the styles out."""
    ref = image_ref(image)
    if job.kind == "art" and (match := _ART_STYLE.match(image.parameters)):
        ref["style"] = match.group(1)
    return ref


def job_json(job: GenerationJob, images: list[GeneratedImage], *, place: int | None = None,
             progress: tuple[int, int] | None = None) -> dict[str, Any]:
    settings = json.loads(job.settings)
    total = total_steps(job.kind, settings)
    if progress is not None:
        step = progress[0]
    elif job.status == "done":
        step = total
    else:
        step = len(images) if job.kind == "art" else 0  # art counts the styles already shown
    return {
        "id": job.id, "kind": job.kind, "model": job.model, "status": job.status, "public": job.public, **settings,
        "place": place if job.status == "queued" else None,
        "step": step,
        "total": total,
        "attempts": job.attempts,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "images": [job_image_ref(job, image) for image in images],
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at), "timings": json.loads(job.timings or "{}"),
    }


class JobService:
    def __init__(self, records: JobRecords, queue: JobQueue, kinds: JobKinds, hub: Hub, blobs: BlobStore,
                 executors: Executors, settings: Settings):
        self.records = records
        self.queue = queue
        self.kinds = kinds
        self._hub = hub
        self._blobs = blobs
        self._executors = executors
        self._settings = settings
        # Other features that let more people watch a job (e.g. a collab session's members its renders).
        self._watch_grants: list[WatchGrant] = []
        self._image_grants: list[ImageGrant] = []
        self._job_guards: list[JobGuard] = []

    def wire(self, topics: TopicPolicy) -> None:
        """`job:<id>` topics: watched by whom `may_watch` admits; a late watcher gets the newest preview."""
        topics.register("job", self.may_watch, joined=self._show_latest_preview)

    async def _show_latest_preview(self, socket: Any, job_id: str) -> None:
        """Previews are not replayed (large, stale at once), so one who joins mid-render is shown the newest."""
        preview = await self.queue.preview(job_id)
        if preview is not None:
            socket.emit({**preview.event(job_id), "topic": f"job:{job_id}"})

    def add_watch_grant(self, grant: WatchGrant) -> None:
        """Let ``grant(principal, job_id)`` admit watchers beyond the owner (and everyone, when public)."""
        self._watch_grants.append(grant)

    def add_image_grant(self, grant: ImageGrant) -> None:
        """Let ``grant(principal, image)`` show single images beyond the job's watchers."""
        self._image_grants.append(grant)

    def add_job_guard(self, guard: JobGuard) -> None:
        """Let ``guard(principal, job_id)`` withhold a job (and its images) that would be public otherwise."""
        self._job_guards.append(guard)

    async def _visible(self, principal: Principal | None, job_id: str, owner_id: int, public: bool) -> bool:
        """The owner always; others when the job is public or a grant admits them, unless a guard withholds it."""
        if principal is not None and principal.user.id == owner_id:
            return True
        if not public and not await self._granted(principal, job_id):
            return False
        for guard in self._job_guards:
            if await guard(principal, job_id):
                return False
        return True

    async def _granted(self, principal: Principal | None, job_id: str) -> bool:
        for grant in self._watch_grants:
            if await grant(principal, job_id):
                return True
        return False

    # Requests

    async def catalogue(self) -> dict[str, Any]:
        """What the model picker shows: the models the workers share, samplers, limits."""
        await self._executors.run_io(self.kinds.registry.refresh)
        specs = sorted(self.kinds.registry.specs(), key=lambda spec: spec.name)
        return {
            "models": [{"name": spec.name, "family": spec.family, "layout": spec.layout,
                        "size_bytes": spec.size_bytes, "native_size": spec.native_side} for spec in specs],
            "samplers": sorted(SAMPLERS),
            "limits": {"steps_max": MAX_STEPS, "size_min": MIN_SIDE_PX, "size_max": MAX_SIDE_PX,
                       "size_multiple": SIDE_MULTIPLE_PX, "prompt_max_chars": MAX_PROMPT_CHARS,
                       "batch_max": MAX_BATCH, "guidance_max": MAX_GUIDANCE},
        }

    async def submit(self, user: User, params: dict[str, Any], image: bytes | None = None, *,
                     mask: bytes | None = None, lane: Lane | None = None) -> dict[str, Any]:
        """Check, store and queue a job of any kind; answers at once (a worker runs it later). `mask`:
        img2img's inpainting; `lane`: it waits and is capped in that line instead of the owner's."""
        spec = await self.kinds.parse(params, image, owner_id=user.id, mask=mask)
        image_sha = await self._executors.run_io(self._blobs.put_bytes, spec.image) if spec.image else spec.image_sha256
        if spec.mask is not None:  # beside the init image, content-addressed like it
            spec.settings[MASK_BLOB] = await self._executors.run_io(self._blobs.put_bytes, spec.mask)
        job = GenerationJob(id=uuid.uuid4().hex, owner_id=user.id, status="queued", kind=spec.kind,
                            model=spec.model, settings=json.dumps(spec.settings), init_image_sha256=image_sha,
                            public=bool(params.get("public", False)), queue_lane=lane.name if lane else None,
                            timings="{}", attempts=0)
        await self.records.create(job)
        try:
            await self.queue.admit(QueuedJob(job.id, user.id, spec.model, spec.kind, time.time(), job.queue_lane),
                                   max_global=self._settings.queue_max_global,
                                   max_per_user=lane.max_waiting if lane else self._settings.queue_max_per_user)
        except Exception:
            await self.records.delete(job.id)  # refused: nothing half-stored
            raise
        await self.announce_places()
        return job_json(job, [], place=await self.queue.place(job.id))

    async def announce_places(self) -> None:
        """Publish `gen.queued` with the new place of every waiting job whose place changed."""
        try:
            await self.queue.announce_places(self._publish_place)
        except (RedisError, Unavailable) as exc:  # the job is queued; its place is told with the next change
            log.warning("queue places not announced: %s", exc)

    async def _publish_place(self, job_id: str, place: int) -> None:
        await self._hub.publish(f"job:{job_id}", {"type": "gen.queued", "job": job_id, "place": place})

    async def cancel(self, user: User, job_id: str, *, keep: bool = False) -> dict[str, Any]:
        """Cancel a waiting job at once, or a running one within a step (its worker reports it).

        `keep` (A1111's interrupt): a running job that has made a step ends as done with its images so far.
        """
        job, _images = await self._load(job_id)
        if job.owner_id != user.id:
            raise Forbidden("Only the owner may cancel a job.")
        if job.status in FINISHED:
            raise Conflict(f"The job is already {job.status}.", code="job_finished")
        if await self.queue.remove(job_id) or not await self.queue.known([job_id]):
            # Waiting (or not yet put back after the queue lost its state): no worker has it.
            if await self.records.cancel_waiting(job_id):
                await self._hub.publish(f"job:{job_id}", {"type": "gen.cancelled", "job": job_id, "step": 0,
                                                          "started": False})
                await self.announce_places()
                return await self._render(*await self._load(job_id))
        await self.queue.request_cancel(job_id, keep=keep)
        return await self._render(*await self._load(job_id))

    async def get(self, principal: Principal | None, job_id: str) -> dict[str, Any]:
        """A job its owner (or anyone, when public, or whom a grant admits) may see."""
        job, images = await self._load(job_id)
        if not await self._visible(principal, job_id, job.owner_id, job.public):
            raise NotFound(f"No job {job_id}.")  # private (or withheld) jobs are not revealed to others
        return await self._render(job, images)

    async def _render(self, job: GenerationJob, images: list[GeneratedImage]) -> dict[str, Any]:
        place = await self.queue.place(job.id) if job.status == "queued" else None
        progress = (await self.queue.live(job.id)).progress if job.status == "running" else None
        return job_json(job, images, place=place, progress=progress)

    async def list_mine(self, user: User, *, before: str | None = None, limit: int = 20
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """My jobs, newest first, with a cursor for older ones."""
        limit = max(1, min(limit, LIST_PAGE_MAX))
        anchor = None
        if before is not None:
            anchor = await self.records.get(before) if _is_job_id(before) else None
            if anchor is None or anchor.owner_id != user.id:
                raise InvalidInput("`before` must be the id of one of your jobs (a `next_cursor`).",
                                   code="invalid_cursor")
        jobs, images = await self.records.page(user.id, before=anchor, limit=limit)
        page = [await self._render(job, images.get(job.id, [])) for job in jobs[:limit]]
        return page, (jobs[limit - 1].id if len(jobs) > limit else None)

    async def may_watch(self, principal: Principal | None, job_id: str) -> bool:
        """``job:<id>`` is for its owner, anyone when the job is public, and whom a grant admits."""
        found = await self.records.owner_and_public(job_id) if _is_job_id(job_id) else None
        if found is None:
            return False
        owner, public = found
        return await self._visible(principal, job_id, owner, public)

    async def image(self, principal: Principal | None, image_id: str) -> dict[str, Any]:
        image = await self._image(principal, image_id)
        return image_json(image)

    async def image_bytes(self, principal: Principal | None, image_id: str, *, thumb: bool) -> tuple[str, bytes]:
        """The PNG (or WebP thumbnail) and its sha256."""
        image = await self._image(principal, image_id)
        digest = image.thumb_sha256 if thumb else image.png_sha256
        return digest, await self._executors.run_io(self._blobs.read_bytes, digest)

    async def _image(self, principal: Principal | None, image_id: str) -> GeneratedImage:
        found = await self.records.image(image_id)
        if found is None:
            raise NotFound(f"No image {image_id}.")
        image, job_public = found
        if await self._visible(principal, image.job_id, image.owner_id, job_public):
            return image
        for grant in self._image_grants:
            if await grant(principal, image):
                return image
        raise NotFound(f"No image {image_id}.")

    async def _load(self, job_id: str) -> tuple[GenerationJob, list[GeneratedImage]]:
        found = await self.records.load(job_id) if _is_job_id(job_id) else None
        if found is None:
            raise NotFound(f"No job {str(job_id)[:40]}.")
        return found

    # Operations

    async def workers(self) -> list[dict[str, Any]]:
        """The workers that heartbeat now: devices, loaded models, running jobs."""
        now = time.time()
        return [{**worker.to_json(), "heartbeat_age_s": round(now - worker.heartbeat_at, 3)}
                for worker in await self.queue.workers()]


def _is_job_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= JOB_ID_MAX_CHARS and value.isascii() and value.isalnum()
