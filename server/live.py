"""Live: the public renders in progress, watched by anyone, at a modest frame rate per tile.

`GET /api/live` lists what renders now (owner, model, prompt, step), how many public jobs wait and the
newest finished ones. The `live:all` topic carries the pictures: while at least one socket of this process
watches it, the process follows the `job:<id>` topics of the public jobs that run (as any watcher of a job
would) and keeps the latest preview of each; every `1 / tile_fps` seconds it sends each job's newest
preview, if it changed, to its own `live:all` watchers (`Hub.deliver_local`: never published, so no other
process and no renderer does any work for it). The renderer publishes its previews whether or not anyone
watches: watchers cost the web side one packed frame per tile per tick, shared by all of them, and the
renderer nothing (bench/live.py measures both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import Principal
from server.hub import Hub, frames
from server.jobs.records import FINAL_EVENTS
from server.jobs import JobService
from server.store.models import GeneratedImage, GenerationJob, User, iso
from server.topics import TopicPolicy
from server.users import public_user

log = logging.getLogger(__name__)

LIVE_TOPIC = "live:all"
TILES_MAX = 24  # renders shown at once (a page of tiles)
RECENT_MAX = 12  # newest finished public jobs
PROMPT_SHOWN_CHARS = 300
# How often the feed asks the database which public jobs run now, in ticks (a job is followed from its
# first preview anyway; this only finds new ones and forgets ended ones).
REFRESH_EVERY_TICKS = 2


@dataclass
class _Tile:
    """What the feed knows of one running public job: its newest frame, not yet sent when ``fresh``."""

    step: int = 0
    total: int = 0
    frame: dict[str, Any] | None = None
    fresh: bool = False
    ended: bool = False


@dataclass
class FeedStats:
    """Counts for the bench and /metrics: frames the renderers sent us, and frames we sent on."""

    previews_in: int = 0
    frames_out: int = 0
    deliveries: int = 0
    ticks: int = 0
    started: float = field(default=0.0)


class LiveService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub, jobs: JobService, *,
                 tile_fps: float = 2.0):
        self._db = sessions
        self._hub = hub
        self._jobs = jobs
        self._interval_secs = 1.0 / tile_fps if tile_fps > 0 else 0.5
        self._tiles: dict[str, _Tile] = {}
        self._watchers = 0
        self._task: asyncio.Task | None = None
        self.stats = FeedStats()

    def wire(self, topics: TopicPolicy) -> None:
        """`live:all`: anyone may watch; the first watcher of this process starts the feed, the last stops it."""
        topics.register("live", self._authorize, joined=self._joined, left=self._left)

    # --- the list -------------------------------------------------------------------------------

    async def snapshot(self, principal: Principal | None) -> dict[str, Any]:
        """Running public renders (newest first), the count of public jobs waiting, the newest finished ones."""
        async with self._db() as db:
            running = (await db.execute(
                select(GenerationJob, User).join(User, User.id == GenerationJob.owner_id)
                .where(GenerationJob.public.is_(True), GenerationJob.status == "running")
                .order_by(GenerationJob.started_at.desc()).limit(TILES_MAX))).all()
            queued = await db.scalar(select(func.count()).select_from(GenerationJob).where(
                GenerationJob.public.is_(True), GenerationJob.status == "queued")) or 0
            recent = (await db.execute(
                select(GenerationJob, User).join(User, User.id == GenerationJob.owner_id)
                .where(GenerationJob.public.is_(True), GenerationJob.status == "done")
                .order_by(GenerationJob.finished_at.desc()).limit(RECENT_MAX))).all()
            covers = await self._first_images(db, [job.id for job, _ in recent])
        return {
            "running": [self._card(job, owner) for job, owner in running
                        if await self._jobs.may_watch(principal, job.id)],
            "queued": queued,
            "recent": [{**self._card(job, owner), "image": covers[job.id]} for job, owner in recent
                       if job.id in covers and await self._jobs.may_watch(principal, job.id)],
            "tile_fps": round(1.0 / self._interval_secs, 2),
        }

    def _card(self, job: GenerationJob, owner: User) -> dict[str, Any]:
        settings = json.loads(job.settings)
        tile = self._tiles.get(job.id)
        return {
            "id": job.id, "kind": job.kind, "model": job.model, "owner": public_user(owner),
            "prompt": str(settings.get("prompt") or settings.get("preset_title") or "")[:PROMPT_SHOWN_CHARS],
            "width": settings.get("width"), "height": settings.get("height"),
            "step": tile.step if tile else 0, "total": tile.total if tile else settings.get("steps"),
            "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
        }

    @staticmethod
    async def _first_images(db: AsyncSession, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        rows = (await db.execute(select(GeneratedImage.job_id, GeneratedImage.id)
                                 .where(GeneratedImage.job_id.in_(job_ids)).order_by(GeneratedImage.id))).all()
        first: dict[str, str] = {}
        for job_id, image_id in rows:
            first.setdefault(job_id, image_id)
        return first

    # --- the feed -------------------------------------------------------------------------------

    async def _authorize(self, _principal: Principal | None, ident: str) -> bool:
        return ident == "all"

    async def _joined(self, _socket: Any, _ident: str) -> None:
        self._watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-feed")

    async def _left(self, _socket: Any, _ident: str) -> None:
        self._watchers = max(0, self._watchers - 1)
        # The feed stops itself at its next tick when nobody is left (no racing cancel here).

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._forget(list(self._tiles))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.stats.started = loop.time()
        tick = 0
        try:
            while True:
                if not self._watchers:
                    await self._forget(list(self._tiles))
                    if not self._watchers:  # nobody came back while we let go of the job topics
                        return
                if tick % REFRESH_EVERY_TICKS == 0:
                    await self._refresh()
                self._send_fresh()
                tick += 1
                self.stats.ticks += 1
                await asyncio.sleep(self._interval_secs)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the live feed stopped")

    async def _refresh(self) -> None:
        """Follow the public jobs that run now (visible to anyone), forget the ones that ended."""
        async with self._db() as db:
            ids = list(await db.scalars(
                select(GenerationJob.id).where(GenerationJob.public.is_(True), GenerationJob.status == "running")
                .order_by(GenerationJob.started_at.desc()).limit(TILES_MAX)))
        running = {job_id for job_id in ids if await self._jobs.may_watch(None, job_id)}
        await self._forget([job_id for job_id, tile in self._tiles.items() if job_id not in running or tile.ended])
        for job_id in running - set(self._tiles):
            self._tiles[job_id] = _Tile()
            await self._hub.subscribe(f"job:{job_id}", self)

    async def _forget(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if self._tiles.pop(job_id, None) is not None:
                await self._hub.unsubscribe(f"job:{job_id}", self)
                self._hub.deliver_local(LIVE_TOPIC, {"type": "live.ended", "job": job_id})

    def _send_fresh(self) -> None:
        watchers = self._hub.local_subscribers(LIVE_TOPIC)
        for job_id, tile in self._tiles.items():
            if tile.fresh and tile.frame is not None:
                tile.fresh = False
                self._hub.deliver_local(LIVE_TOPIC, {"type": "live.preview", "job": job_id, **tile.frame})
                self.stats.frames_out += 1
                self.stats.deliveries += watchers

    # Subscriber: the job topics' events, as a socket would get them.

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        job_id = topic.removeprefix("job:")
        tile = self._tiles.get(job_id)
        if tile is None:
            return
        try:
            event = frames.decode(frame)
        except frames.BadFrame:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "gen.preview":
            self.stats.previews_in += 1
            tile.step, tile.total = int(event.get("step") or 0), int(event.get("total") or 0)
            tile.frame = {"step": tile.step, "total": tile.total, "mime": event.get("mime"),
                          "image": event.get("image")}
            tile.fresh = True
        elif kind == "gen.progress":
            tile.step, tile.total = int(event.get("step") or 0), int(event.get("total") or 0)
        elif kind in FINAL_EVENTS:
            tile.ended = True

    def reset(self, topic: str, epoch: str) -> None:
        """A job topic's history restarted: nothing to do, the next preview is as good as any."""
