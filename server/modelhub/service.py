"""The model hub's parts, built together, with the housekeeping loop that flushes counters and sweeps uploads."""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from server.blobs import BlobStore
from server.cache import Cache
from server.executors import Executors
from server.modelhub.catalog import Catalog
from server.modelhub.counters import MemoryCounters, RedisCounters
from server.modelhub.hf_compat import HfCompat
from server.modelhub.publish import ModelLinks
from server.modelhub.uploads import UploadService
from server.moderation import ModerationService, Target

log = logging.getLogger(__name__)

# Abandoned uploads are looked for this often; they expire after `hub_upload_expiry_secs`.
UPLOAD_SWEEP_SECS = 10 * 60


@dataclass
class ModelHub:
    catalog: Catalog
    uploads: UploadService
    hf: HfCompat
    executors: Executors
    blobs: BlobStore
    flush_secs: float
    accel_redirect_prefix: str | None = None
    _task: asyncio.Task | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: Settings, db: async_sessionmaker[AsyncSession], cache: Cache, client: redis.Redis | None,
              blobs: BlobStore, executors: Executors) -> "ModelHub":
        counters = RedisCounters(client, settings.redis_prefix) if client is not None else MemoryCounters()
        catalog = Catalog(db, cache, blobs, executors, counters, settings.hub_cache_ttl_secs,
                          ModelLinks(settings.models_dir))
        uploads = UploadService(db, blobs, executors, catalog, settings.hub_max_file_bytes,
                                settings.hub_upload_expiry_secs)
        return cls(catalog, uploads, HfCompat(catalog), executors, blobs, settings.hub_counter_flush_secs,
                   settings.hub_accel_redirect_prefix)

    def accel_redirect(self, path: Path) -> str | None:
        """The URI nginx serves a stored file from (X-Accel-Redirect), or None when the service sends it."""
        if self.accel_redirect_prefix is None:
            return None
        relative = path.relative_to(self.blobs.root).as_posix()
        return self.accel_redirect_prefix.rstrip("/") + "/" + quote(relative)

    def wire(self, moderation: ModerationService) -> None:
        """Hub models can be reported, and hidden or restored by moderators."""
        moderation.register("model", Target(set_hidden=self.catalog.set_hidden, describe=self.catalog.describe))

    def start(self) -> "ModelHub":
        self._task = asyncio.ensure_future(self._housekeeping())
        return self

    async def _housekeeping(self) -> None:
        await self._sweep()  # at start-up: what a process that died (e.g. mid-PUT) left behind
        since_sweep = 0.0
        while True:
            # Jitter keeps several web processes from flushing in lockstep.
            delay = self.flush_secs * random.uniform(0.8, 1.2)
            await asyncio.sleep(delay)
            since_sweep += delay
            try:
                await self.catalog.flush_counters()
            except Exception:
                log.exception("flushing the model hub's counters failed; retrying next round")
            if since_sweep >= UPLOAD_SWEEP_SECS:
                since_sweep = 0
                await self._sweep()

    async def _sweep(self) -> None:
        try:
            expired = await self.uploads.expire()
            puts = await self.uploads.sweep_abandoned_puts()
            # Temporary files of processes that died mid-upload (no row points at them any more).
            swept = await self.executors.run_io(self.blobs.sweep_temp, self.uploads.expiry_secs + 3600)
            if expired or puts or swept:
                log.info("expired %d abandoned uploads, swept %d abandoned PUTs and %d stray temporary files",
                         expired, puts, swept)
        except Exception:
            log.exception("sweeping abandoned uploads failed; retrying next round")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        with suppress(Exception):
            await self.catalog.flush_counters()
