"""The worker's job loop: take fairly, hold the lease, run, store the outcome once, report.

A worker with a free slot first takes over jobs whose worker stopped heartbeating
(`reclaim`), then the next job by the queue's policy (`take`). It renews its
leases twice per heartbeat interval; a job it no longer owns (taken over while it
was presumed dead) is stopped, and whatever it would still write is refused by the
conditional writes of `JobRecords`. Every outcome is committed before it is
announced and before the lease is acked, so a worker that dies in between leaves a
job that the next worker finds finished and simply acks.

Events leave through one publisher coroutine, so a job's events reach the hub in
the order they happened, whichever thread (engine, encoder, art pool) made them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from config import Settings
from inference.events import GeneratedImage as ProducedImage
from inference.events import ControlImages, JobEvent, Preview, Progress, Started
from server.blobs import BlobStore
from server.executors import Executors
from server.hub import Hub
from server.images import make_thumbnail
from server.jobs.kinds import MASK_BLOB
from server.jobs.queue import JobQueue, LatestPreview, Lease, QueuedJob, WorkerInfo
from server.jobs.records import JobRecords
from server.jobs.service import image_ref
from server.store.models import GeneratedImage, GenerationJob, utcnow
from server.worker.kinds import JobContext, KindRunner, Outcome, StoredImage

log = logging.getLogger(__name__)

# A job's queue place and the sweep for lost jobs run at this multiple of the heartbeat interval.
UPKEEP_HEARTBEATS = 5
# A waiting row the queue does not know is put back only when older than this (its submit may be in flight).
ORPHAN_MIN_AGE_SECS = 10.0
# After a failure to reach Redis or the database, wait this long before trying again.
RETRY_SECS = 0.5
# Once a stopping worker has cancelled what is left, how long each job may take to notice; how long the
# events already made may take to reach the hub (bounded: Redis may be down).
STOP_CANCEL_WAIT_SECS = 10.0
STOP_DRAIN_SECS = 5.0
_STOP = object()


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclass
class _Running:
    lease: Lease
    kind: KindRunner | None = None
    task: asyncio.Task | None = None
    started: float = 0.0
    lost: bool = False  # another worker took the job over
    handing_back: bool = False  # this worker is stopping and gives the job back


class JobRunner:
    def __init__(self, *, queue: JobQueue, records: JobRecords, hub: Hub, blobs: BlobStore, executors: Executors,
                 settings: Settings, kinds: list[KindRunner], devices: list[str], slots: int,
                 worker_id: str | None = None):
        self.queue = queue
        self._records = records
        self._hub = hub
        self._blobs = blobs
        self._executors = executors
        self._settings = settings
        self._kinds = {kind: runner for runner in kinds for kind in runner.kinds}
        self._runners = kinds
        self._slots = slots
        self.info = WorkerInfo(id=worker_id or new_worker_id(), host=socket.gethostname(), pid=os.getpid(),
                               devices=devices, slots=slots, started_at=time.time())
        self._running: dict[str, _Running] = {}
        self._slot_free = asyncio.Event()
        self._events: asyncio.Queue[Any] = asyncio.Queue()  # (job id, event), or _STOP
        self._tasks: list[asyncio.Task] = []
        self._publisher: asyncio.Task | None = None
        self._stopping = False

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def _heartbeat_secs(self) -> float:
        return self._settings.worker_heartbeat_secs

    def loaded_models(self) -> set[str]:
        return set().union(*(runner.loaded_models() for runner in self._runners))

    async def start(self) -> "JobRunner":
        self.queue.on_cancel(self._on_cancel)
        try:
            await self._upkeep_once()
        except (RedisError, SQLAlchemyError, OSError) as exc:  # a worker starts while Redis is down, and waits
            log.warning("worker %s: queue upkeep at start failed (%s); retrying in the background", self.id, exc)
        self._publisher = asyncio.create_task(self._publish_loop(), name="worker-publish")
        self._tasks = [asyncio.create_task(self._take_loop(), name="worker-take"),
                       asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat"),
                       asyncio.create_task(self._upkeep_loop(), name="worker-upkeep"), self._publisher]
        log.info("worker %s taking jobs (%d slot%s on %s)", self.id, self._slots, "" if self._slots == 1 else "s",
                 ", ".join(self.info.devices))
        return self

    async def stop(self, grace_secs: float) -> None:
        """Take no new job; let running ones finish for `grace_secs`, then hand the rest back; leave."""
        self._stopping = True
        self._slot_free.set()
        tasks = [running.task for running in self._running.values() if running.task is not None]
        if tasks:
            log.info("worker %s stopping: waiting up to %.0f s for %d job(s)", self.id, grace_secs, len(tasks))
            _done, pending = await asyncio.wait(tasks, timeout=grace_secs)
            for running in list(self._running.values()):
                running.handing_back = True
                if running.kind is not None:
                    running.kind.stop(running.lease.job.job_id)
            if pending:
                await asyncio.wait(pending, timeout=STOP_CANCEL_WAIT_SECS)
        # The publisher ends after what is queued (a sentinel, not a cancel: redis-py may swallow a
        # cancellation that lands inside a command, and the task would then wait for events forever).
        self._events.put_nowait(_STOP)
        if self._publisher is not None:
            await asyncio.wait([self._publisher], timeout=STOP_DRAIN_SECS)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_CANCEL_WAIT_SECS)
        with suppress(RedisError, OSError):
            await self.queue.leave(self.id)
        for runner in self._runners:
            await runner.close()

    # Taking

    async def _take_loop(self) -> None:
        poll = self._heartbeat_secs / 4  # an idle worker looks for abandoned jobs this often
        while not self._stopping:
            if len(self._running) >= self._slots:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                lease = await self.queue.reclaim(self.id, self._settings.worker_claim_secs)
                if lease is None:
                    lease = await self.queue.take(self.id, self.loaded_models())
            except (RedisError, OSError) as exc:
                log.warning("worker %s cannot reach the queue (%s); retrying", self.id, exc)
                await asyncio.sleep(RETRY_SECS)
                continue
            if lease is None:
                await self.queue.wait_for_work(poll)
                continue
            running = self._running[lease.job.job_id] = _Running(lease, started=time.perf_counter())
            running.task = asyncio.create_task(self._run(running), name=f"job-{lease.job.job_id}")

    def _on_cancel(self, job_id: str, keep: bool) -> None:
        running = self._running.get(job_id)
        if running is not None and running.kind is not None:
            running.kind.stop(job_id, keep=keep)

    # Running

    async def _run(self, running: _Running) -> None:
        lease = running.lease
        job_id = lease.job.job_id
        try:
            await self._run_leased(running)
        except asyncio.CancelledError:
            raise
        except (RedisError, SQLAlchemyError, OSError) as exc:
            # The lease stays ours until it expires; another worker (or this one) takes the job over then.
            log.warning("job %s: storage failed around the run (%s); it will be taken over", job_id, exc)
        except Exception:
            log.exception("job %s: the worker failed around the run", job_id)
        finally:
            self._running.pop(job_id, None)
            self._slot_free.set()

    async def _run_leased(self, running: _Running) -> None:
        lease = running.lease
        job_id = lease.job.job_id
        job = await self._records.start(job_id, self.id)
        if job is None:  # finished or cancelled meanwhile (or gone): nothing to run
            if not await self.queue.ack(lease, self.id):
                log.info("job %s: not ours any more", job_id)
            await self._announce_places()
            return
        await self._announce_places()
        attempt = job.attempts
        if attempt > 1:
            self._emit(job_id, {"type": "gen.restarted", "job": job_id, "attempt": attempt})
        if attempt > self._settings.job_max_attempts:
            log.error("dead letter: job %s stopped its worker %d times", job_id, attempt - 1)
            await self._conclude(running, job, attempt, Outcome.failed(
                "worker_lost", f"The job stopped its worker {attempt - 1} times; it is not tried again."))
            return
        if await self.queue.cancel_requested(job_id):
            await self._conclude(running, job, attempt, Outcome("cancelled", event={"started": False}))
            return
        running.kind = self._kinds.get(job.kind)
        if running.kind is None:
            await self._conclude(running, job, attempt, Outcome.failed(
                "unknown_kind", f"This worker cannot run jobs of kind {job.kind!r}."))
            return
        settings = json.loads(job.settings)
        input_image, input_mask = await self._executors.run_io(_read_blobs, self._blobs, job.init_image_sha256,
                                                               settings.get(MASK_BLOB))
        context = JobContext(job=job, attempt=attempt, settings=settings, input_image=input_image,
                             input_mask=input_mask,
                             emit=lambda event: self._emit(job_id, event),
                             store_image=lambda image, thumb: self._store_now(job, attempt, image, thumb),
                             reuse_image=lambda stored: self._add_row(job, attempt, _row(job, stored)))
        if await self.queue.cancel_requested(job_id):  # asked while the input was read
            await self._conclude(running, job, attempt, Outcome("cancelled", event={"started": False}))
            return
        try:
            outcome = await running.kind.run(context)
        except Exception as exc:  # the kind failed in a way it did not name; the job fails alone
            log.exception("job %s failed", job_id)
            outcome = Outcome.failed("generation_failed", f"The job failed: {type(exc).__name__}.")
        await self._conclude(running, job, attempt, outcome)

    async def _store_now(self, job: GenerationJob, attempt: int, produced: ProducedImage,
                         thumb: bytes | None) -> GeneratedImage | None:
        return await self._add_row(job, attempt, await self._store_blobs(job, produced, thumb))

    async def _add_row(self, job: GenerationJob, attempt: int, image: GeneratedImage) -> GeneratedImage | None:
        return image if await self._records.add_image(job.id, self.id, attempt, image) else None

    async def _store_blobs(self, job: GenerationJob, produced: ProducedImage,
                           thumb: bytes | None = None) -> GeneratedImage:
        """Write a PNG and its thumbnail to the blob store (in parallel); the caller adds the row."""
        if thumb is None:
            thumb, png_sha = await asyncio.gather(self._executors.run_cpu(make_thumbnail, produced.png),
                                                  self._executors.run_io(self._blobs.put_bytes, produced.png))
        else:
            png_sha = await self._executors.run_io(self._blobs.put_bytes, produced.png)
        thumb_sha = await self._executors.run_io(self._blobs.put_bytes, thumb)
        return _row(job, StoredImage(png_sha, thumb_sha, produced.width, produced.height, produced.seed,
                                     produced.parameters))

    async def _conclude(self, running: _Running, job: GenerationJob, attempt: int, outcome: Outcome) -> None:
        """Commit the outcome (once, if still ours), announce it, ack the lease."""
        job_id = job.id
        if outcome.status == "cancelled" and running.handing_back and not running.lost:
            await self._hand_back(running)
            return
        try:
            images = [await self._store_blobs(job, produced) for produced in outcome.images]
        except OSError:
            log.exception("storing the images of job %s failed", job_id)
            outcome, images = Outcome.failed("storage_failed", "The images could not be stored."), []
        committed = await self._records.finish(job_id, self.id, attempt, outcome.status, error=outcome.error,
                                               timings=outcome.timings, images=images)
        if not committed:
            log.warning("job %s: a late result of attempt %d was discarded (another worker owns the job)",
                        job_id, attempt)
            return
        self._emit(job_id, self._final_event(job_id, outcome, images))
        await self.queue.ack(running.lease, self.id)

    @staticmethod
    def _final_event(job_id: str, outcome: Outcome, images: list[GeneratedImage]) -> dict[str, Any]:
        if outcome.status == "done":
            return {"type": "gen.done", "job": job_id, "images": [image_ref(image) for image in images],
                    "timings": outcome.timings, **outcome.event}
        if outcome.status == "cancelled":
            return {"type": "gen.cancelled", "job": job_id, "step": outcome.step, **outcome.event}
        code, message = outcome.error or ("generation_failed", "The job failed.")
        return {"type": "gen.error", "job": job_id, "code": code, "message": message}

    async def _hand_back(self, running: _Running) -> None:
        """This worker stops before the job ends: it waits again, at the head of the line, for another worker."""
        job_id = running.lease.job.job_id
        if await self._records.requeue(job_id, self.id, count_attempt=False):
            self._emit(job_id, {"type": "gen.requeued", "job": job_id, "reason": "worker_stopped"})
            await self.queue.hand_back(running.lease, self.id)
            await self._announce_places()
            log.info("job %s handed back", job_id)

    async def _announce_places(self) -> None:
        await self.queue.announce_places(self._publish_place)

    async def _publish_place(self, job_id: str, place: int) -> None:
        await self._hub.publish(f"job:{job_id}", {"type": "gen.queued", "job": job_id, "place": place})

    # Events

    def _emit(self, job_id: str, event: JobEvent | dict[str, Any]) -> None:
        self._events.put_nowait((job_id, event))

    async def _publish_loop(self) -> None:
        """The one coroutine that turns job events into hub events, in order."""
        while True:
            item = await self._events.get()
            if item is _STOP:
                return
            job_id, event = item
            try:
                await self._publish_one(job_id, event)
            except Exception:
                log.exception("publishing an event of job %s failed", job_id)

    async def _publish_one(self, job_id: str, event: JobEvent | dict[str, Any]) -> None:
        topic = f"job:{job_id}"
        if isinstance(event, dict):
            await self._hub.publish(topic, event)
        elif isinstance(event, Preview):
            # Not sequenced: previews are large and stale a moment later; a reconnecting client waits for the next.
            await self._hub.publish(topic, event.to_message(), sequenced=False)
            # ...so the newest one is kept apart, for whoever starts watching mid-render (a room, `/sdapi` progress).
            await self.queue.set_preview(job_id, LatestPreview(event.step, event.total, event.mime, event.image))
        elif isinstance(event, Progress):
            message = event.to_message()
            running = self._running.get(job_id)
            if running is not None:
                elapsed = time.perf_counter() - running.started
                message["elapsed"] = round(elapsed, 3)
                message["eta"] = round(elapsed / event.step * (event.total - event.step), 3) if event.step else None
            await self._hub.publish(topic, message)
            await self.queue.set_progress(job_id, event.step, event.total)
        elif isinstance(event, (Started, ControlImages)):
            # The control images (what each ControlNet unit follows) are sequenced: a page that submitted over
            # HTTP and subscribed a moment later still gets them replayed.
            await self._hub.publish(topic, event.to_message())
        # Done, Failed and Cancelled from the engine are announced by _conclude, after the outcome is stored.

    # Leases and lost jobs

    async def _heartbeat_loop(self) -> None:
        # Renewed twice per interval: a lease expires only after `worker_claim_secs` without renewal.
        while True:
            await asyncio.sleep(self._heartbeat_secs / 2)
            try:
                await self._heartbeat()
            except (RedisError, OSError) as exc:
                log.warning("worker %s cannot heartbeat (%s)", self.id, exc)

    async def _heartbeat(self) -> None:
        self.info.models = sorted(self.loaded_models())
        self.info.running = list(self._running)
        leases = [running.lease for running in self._running.values() if not running.lost]
        for job_id in await self.queue.heartbeat(self.info, leases):
            running = self._running.get(job_id)
            if running is None:
                continue
            # The queue lost its state (a Redis restart): lease the job to us again. Otherwise another
            # worker took it over while we looked dead: stop, and our late writes are refused anyway.
            adopted = await self.queue.adopt(running.lease.job, self.id)
            if adopted is not None:
                running.lease = adopted
                continue
            log.warning("job %s: lease lost to another worker; stopping this run", job_id)
            running.lost = True
            if running.kind is not None:
                running.kind.stop(job_id)

    async def _upkeep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_secs * UPKEEP_HEARTBEATS)
            try:
                await self._upkeep_once()
            except (RedisError, SQLAlchemyError, OSError) as exc:
                log.warning("worker %s: queue upkeep failed (%s)", self.id, exc)

    async def _upkeep_once(self) -> None:
        """Put back what the queue lost: waiting rows it does not hold, running rows of dead workers."""
        lost_state = await self.queue.lost_state()
        if not lost_state and not await self.queue.try_lock("upkeep", self._heartbeat_secs * (UPKEEP_HEARTBEATS - 1)):
            return
        older_than = None if lost_state else utcnow() - dt.timedelta(seconds=ORPHAN_MIN_AGE_SECS)
        waiting = await self._records.in_status("queued", older_than=older_than)
        running = await self._records.in_status("running")
        known = await self.queue.known([job.id for job in waiting + running])
        alive = await self.queue.alive_workers() | {self.id}
        back: list[GenerationJob] = [job for job in waiting if job.id not in known]
        claim_cutoff = utcnow() - dt.timedelta(seconds=self._settings.worker_claim_secs)
        for job in running:
            if job.id in known or job.worker_id in alive or (job.started_at and job.started_at > claim_cutoff):
                continue
            if await self._records.requeue(job.id, job.worker_id, count_attempt=True):
                log.warning("job %s: its worker %s is gone; queued again", job.id, job.worker_id)
                self._emit(job.id, {"type": "gen.requeued", "job": job.id, "reason": "worker_lost"})
                back.append(job)
        if back:
            added = await self.queue.readmit([_queued(job) for job in back])
            log.info("put %d job(s) back into the queue from the database", added)
            await self._announce_places()


def _row(job: GenerationJob, stored: StoredImage) -> GeneratedImage:
    return GeneratedImage(id=uuid.uuid4().hex, owner_id=job.owner_id, job_id=job.id, png_sha256=stored.png_sha256,
                          thumb_sha256=stored.thumb_sha256, width=stored.width, height=stored.height,
                          seed=stored.seed, parameters=stored.parameters)


def _queued(job: GenerationJob) -> QueuedJob:
    created = job.created_at.replace(tzinfo=dt.UTC).timestamp() if job.created_at else time.time()
    return QueuedJob(job.id, job.owner_id, job.model, job.kind, created, job.queue_lane)


def _read_blobs(blobs: BlobStore, *sha256s: str | None) -> list[bytes | None]:
    """The job's input blobs (init image, mask), in one trip to the I/O pool; None where there is none."""
    return [blobs.read_bytes(sha) if sha else None for sha in sha256s]
