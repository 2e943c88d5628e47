"""The in-process job queue: one process holds every role (the embedded default).

Same interface and policy as the Redis queue; leases cannot outlive their worker
here (the worker is this process), so `reclaim` finds nothing and a restart is the
only loss of state: `lost_state()` answers True once, for the first caller.
"""

from __future__ import annotations

import asyncio
import time

from server.jobs.fairqueue import Entry, FairQueue
from server.jobs.queue import (CancelListener, JobLive, LatestPreview, Lease, PlacePublisher, QueuedJob, QueueFull, QueueStats,
                               WorkerInfo)

# Cancel requests for jobs that never came to run are forgotten past this many (bounded memory).
MAX_CANCEL_REQUESTS = 10_000
# A worker that has not heartbeat for this long is left out of the registry.
WORKER_EXPIRY_SECS = 30.0


class MemoryJobQueue:
    def __init__(self) -> None:
        self._fair: FairQueue[QueuedJob] = FairQueue()
        self._leases: dict[str, str] = {}  # job id -> worker id
        self._places: dict[str, int] = {}
        self._progress: dict[str, tuple[int, int]] = {}
        self._previews: dict[str, LatestPreview] = {}
        self._cancels: dict[str, None] = {}
        self._listeners: list[CancelListener] = []
        self._workers: dict[str, WorkerInfo] = {}
        self._wake = asyncio.Event()
        self._state_lost = True  # a fresh process: the database may hold jobs that were waiting
        self._announcing = asyncio.Lock()
        self._dirty = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._wake.set()

    # Web side

    async def admit(self, job: QueuedJob, *, max_global: int, max_per_user: int) -> None:
        if job.job_id in self._fair or job.job_id in self._leases:
            return
        waiting = len(self._fair)
        if waiting >= max_global:
            raise QueueFull(f"The queue is full: {waiting} jobs are waiting. Try again in a moment.")
        mine = self._fair.count_for(job.share)
        if mine >= max_per_user:
            raise QueueFull(f"You already have {mine} jobs waiting, the most allowed; wait for one to finish.")
        self._push(job)

    def _push(self, job: QueuedJob) -> None:
        self._fair.push(Entry(job_id=job.job_id, user_id=job.share, model=job.model, item=job))
        self._wake.set()

    async def remove(self, job_id: str) -> bool:
        removed = self._fair.remove(job_id) is not None
        self._places.pop(job_id, None)
        return removed

    async def request_cancel(self, job_id: str, keep: bool = False) -> None:
        self._cancels[job_id] = None
        while len(self._cancels) > MAX_CANCEL_REQUESTS:
            del self._cancels[next(iter(self._cancels))]
        for listener in self._listeners:
            listener(job_id, keep)

    async def announce_places(self, publish: PlacePublisher) -> None:
        # One announcer at a time, and whoever changes the queue meanwhile makes it go round again,
        # so the last place published for a job is always its current one.
        self._dirty = True
        if self._announcing.locked():
            return
        async with self._announcing:
            while self._dirty:
                self._dirty = False
                current = self._fair.places()
                for job_id in [job_id for job_id in self._places if job_id not in current]:
                    del self._places[job_id]
                for job_id, place in current.items():
                    if self._places.get(job_id) != place:
                        self._places[job_id] = place
                        await publish(job_id, place)

    async def place(self, job_id: str) -> int | None:
        return self._places.get(job_id) if job_id in self._fair else None

    async def live(self, job_id: str, *, preview: bool = False) -> JobLive:
        return JobLive(await self.place(job_id), self._progress.get(job_id),
                       self._previews.get(job_id) if preview else None)

    async def stats(self) -> QueueStats:
        by_model: dict[str, int] = {}
        oldest = None
        for entry in self._fair.entries():
            by_model[entry.model] = by_model.get(entry.model, 0) + 1
            oldest = entry.item.enqueued_at if oldest is None else min(oldest, entry.item.enqueued_at)
        return QueueStats(waiting=len(self._fair), waiting_by_model=by_model, oldest_waiting_at=oldest,
                          running=len(self._leases), redeliveries=0, dead_letters=0)

    async def workers(self) -> list[WorkerInfo]:
        cutoff = time.time() - WORKER_EXPIRY_SECS
        live = [worker for worker in self._workers.values() if worker.heartbeat_at >= cutoff]
        return sorted(live, key=lambda worker: worker.started_at, reverse=True)

    # Worker side

    async def take(self, worker_id: str, loaded_models: set[str]) -> Lease | None:
        entry = self._fair.pop(lambda model: model in loaded_models)
        if entry is None:
            return None
        self._places.pop(entry.job_id, None)
        self._leases[entry.job_id] = worker_id
        return Lease(entry.item, entry.job_id)

    async def reclaim(self, worker_id: str, idle_secs: float) -> Lease | None:
        return None  # every lease's worker is this process, alive while it asks

    async def ack(self, lease: Lease, worker_id: str) -> bool:
        if self._leases.get(lease.job.job_id) != worker_id:
            return False
        self._forget(lease.job.job_id)
        return True

    def _forget(self, job_id: str) -> None:
        self._leases.pop(job_id, None)
        self._progress.pop(job_id, None)
        self._previews.pop(job_id, None)
        self._cancels.pop(job_id, None)

    async def hand_back(self, lease: Lease, worker_id: str) -> None:
        if self._leases.get(lease.job.job_id) == worker_id:
            self._forget(lease.job.job_id)
            job = lease.job
            self._fair.push_front(Entry(job_id=job.job_id, user_id=job.share, model=job.model, item=job))
            self._wake.set()

    async def adopt(self, job: QueuedJob, worker_id: str) -> Lease | None:
        if job.job_id in self._fair or self._leases.get(job.job_id, worker_id) != worker_id:
            return None
        self._leases[job.job_id] = worker_id
        return Lease(job, job.job_id)

    async def heartbeat(self, worker: WorkerInfo, leases: list[Lease]) -> list[str]:
        worker.heartbeat_at = time.time()
        self._workers[worker.id] = worker
        return [lease.job.job_id for lease in leases if self._leases.get(lease.job.job_id) != worker.id]

    async def leave(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def wait_for_work(self, timeout: float) -> None:
        if not self._fair:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def on_cancel(self, listener: CancelListener) -> None:
        self._listeners.append(listener)

    async def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancels

    async def set_progress(self, job_id: str, step: int, total: int) -> None:
        self._progress[job_id] = (step, total)

    async def set_preview(self, job_id: str, preview: LatestPreview) -> None:
        if job_id in self._leases:  # a frame published after the job ended is not kept forever
            self._previews[job_id] = preview

    async def preview(self, job_id: str) -> LatestPreview | None:
        return self._previews.get(job_id)

    async def readmit(self, jobs: list[QueuedJob]) -> int:
        added = 0
        for job in jobs:
            if job.job_id not in self._fair and job.job_id not in self._leases:
                self._push(job)
                added += 1
        return added

    async def lost_state(self) -> bool:
        lost, self._state_lost = self._state_lost, False
        return lost

    async def known(self, job_ids: list[str]) -> set[str]:
        return {job_id for job_id in job_ids if job_id in self._fair or job_id in self._leases}

    async def alive_workers(self) -> set[str]:
        return {worker.id for worker in await self.workers()}

    async def try_lock(self, name: str, ttl_secs: float) -> bool:
        return True  # one process: nobody to exclude
