"""Job rows: the truth of every job, whichever process takes, runs or watches it.

A worker owns a running job through the queue's lease; the row records which
worker (`worker_id`) on which attempt (`attempts`). Every write a worker makes
about a job is conditional on both, so a worker that lost its lease (presumed
dead, its job taken over) can neither finish the job nor add images to it: a late
duplicate is discarded, and completion is idempotent on the job id.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import GeneratedImage, GenerationJob, utcnow

FINISHED = ("done", "failed", "cancelled")
# The events that end a job's topic, one per finished status.
FINAL_EVENTS = ("gen.done", "gen.error", "gen.cancelled")


class JobRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions

    async def create(self, job: GenerationJob) -> None:
        async with self._db() as db:
            db.add(job)
            await db.commit()

    async def delete(self, job_id: str) -> None:
        """Forget a job that was refused after it was stored (nothing half-stored)."""
        async with self._db() as db:
            await db.execute(delete(GenerationJob).where(GenerationJob.id == job_id))
            await db.commit()

    async def get(self, job_id: str) -> GenerationJob | None:
        async with self._db() as db:
            return await db.get(GenerationJob, job_id)

    async def load(self, job_id: str) -> tuple[GenerationJob, list[GeneratedImage]] | None:
        async with self._db() as db:
            job = await db.get(GenerationJob, job_id)
            if job is None:
                return None
            images = list(await db.scalars(select(GeneratedImage).where(GeneratedImage.job_id == job_id)
                                           .order_by(GeneratedImage.created_at, GeneratedImage.id)))
        return job, images

    async def image(self, image_id: str) -> tuple[GeneratedImage, bool] | None:
        """An image and whether its job is public."""
        async with self._db() as db:
            row = (await db.execute(select(GeneratedImage, GenerationJob.public)
                                    .join(GenerationJob, GenerationJob.id == GeneratedImage.job_id)
                                    .where(GeneratedImage.id == image_id))).first()
        return None if row is None else (row[0], row[1])

    async def owner_and_public(self, job_id: str) -> tuple[int, bool] | None:
        async with self._db() as db:
            row = (await db.execute(select(GenerationJob.owner_id, GenerationJob.public)
                                    .where(GenerationJob.id == job_id))).first()
        return None if row is None else (row[0], row[1])

    async def page(self, owner_id: int, *, before: GenerationJob | None, limit: int
                   ) -> tuple[list[GenerationJob], dict[str, list[GeneratedImage]]]:
        """Up to ``limit + 1`` of an owner's jobs older than ``before``, newest first, with their images."""
        query = select(GenerationJob).where(GenerationJob.owner_id == owner_id)
        if before is not None:
            query = query.where((GenerationJob.created_at < before.created_at) |
                                ((GenerationJob.created_at == before.created_at) & (GenerationJob.id < before.id)))
        async with self._db() as db:
            jobs = list(await db.scalars(query.order_by(GenerationJob.created_at.desc(), GenerationJob.id.desc())
                                         .limit(limit + 1)))
            ids = [job.id for job in jobs[:limit]]
            images = list(await db.scalars(select(GeneratedImage).where(GeneratedImage.job_id.in_(ids))
                                           .order_by(GeneratedImage.created_at, GeneratedImage.id))) if ids else []
        by_job: dict[str, list[GeneratedImage]] = {}
        for image in images:
            by_job.setdefault(image.job_id, []).append(image)
        return jobs, by_job

    async def unfinished(self, owner_id: int, *, limit: int = 10) -> list[GenerationJob]:
        """An owner's queued and running jobs, newest first."""
        async with self._db() as db:
            return list(await db.scalars(
                select(GenerationJob).where(GenerationJob.owner_id == owner_id,
                                            GenerationJob.status.in_(("queued", "running")))
                .order_by(GenerationJob.created_at.desc(), GenerationJob.id.desc()).limit(limit)))

    async def cancel_waiting(self, job_id: str) -> bool:
        """Cancel a job that no worker took; False when it is no longer waiting."""
        return await self._set(job_id, {"status": "cancelled", "finished_at": utcnow()},
                               GenerationJob.status == "queued")

    # Workers

    async def start(self, job_id: str, worker_id: str) -> GenerationJob | None:
        """Record that this worker runs the job (one more attempt); None when the job is finished or gone."""
        async with self._db() as db:
            result = await db.execute(
                update(GenerationJob)
                .where(GenerationJob.id == job_id, GenerationJob.status.in_(("queued", "running")))
                .values(status="running", worker_id=worker_id, attempts=GenerationJob.attempts + 1,
                        started_at=utcnow()))
            await db.commit()
            if result.rowcount != 1:
                return None
            return await db.get(GenerationJob, job_id)

    def _owned(self, job_id: str, worker_id: str, attempt: int) -> Any:
        return ((GenerationJob.id == job_id) & (GenerationJob.status == "running")
                & (GenerationJob.worker_id == worker_id) & (GenerationJob.attempts == attempt))

    async def add_image(self, job_id: str, worker_id: str, attempt: int, image: GeneratedImage) -> bool:
        """Store one image of a running job, if this worker still owns it (results shown as they come)."""
        async with self._db() as db:
            owner = await db.scalar(select(GenerationJob.id).where(self._owned(job_id, worker_id, attempt))
                                    .with_for_update())
            if owner is None:
                return False
            db.add(image)
            await db.commit()
        return True

    async def finish(self, job_id: str, worker_id: str, attempt: int, status: str, *,
                     error: tuple[str, str] | None = None, timings: dict[str, float] | None = None,
                     images: list[GeneratedImage] = (), settings: dict[str, Any] | None = None) -> bool:
        """Store a job's outcome and its images in one transaction, if this worker still owns it."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if error is not None:
            values.update(error_code=error[0], error_message=error[1][:1000])
        if timings is not None:
            values["timings"] = json.dumps(timings)
        if settings is not None:
            values["settings"] = json.dumps(settings)
        async with self._db() as db:
            result = await db.execute(update(GenerationJob).where(self._owned(job_id, worker_id, attempt))
                                      .values(**values))
            if result.rowcount != 1:
                await db.rollback()
                return False
            db.add_all(images)  # one transaction: a job is never "done" without its images
            await db.commit()
        return True

    async def requeue(self, job_id: str, worker_id: str | None, *, count_attempt: bool) -> bool:
        """A running job goes back to waiting: its worker died (the attempt counts) or handed it back."""
        values: dict[str, Any] = {"status": "queued", "worker_id": None}
        if not count_attempt:
            values["attempts"] = GenerationJob.attempts - 1
        owner = GenerationJob.worker_id.is_(None) if worker_id is None else GenerationJob.worker_id == worker_id
        return await self._set(job_id, values, GenerationJob.status == "running", owner)

    async def _set(self, job_id: str, values: dict[str, Any], *conditions: Any) -> bool:
        async with self._db() as db:
            result = await db.execute(update(GenerationJob).where(GenerationJob.id == job_id, *conditions)
                                      .values(**values))
            await db.commit()
        return result.rowcount == 1

    async def in_status(self, status: str, *, older_than: dt.datetime | None = None) -> list[GenerationJob]:
        """Jobs in a status, oldest first (the queue's chores: waiting and running jobs are few)."""
        query = select(GenerationJob).where(GenerationJob.status == status)
        if older_than is not None:
            query = query.where(GenerationJob.created_at < older_than)
        async with self._db() as db:
            return list(await db.scalars(query.order_by(GenerationJob.created_at, GenerationJob.id)))
