"""Persisted Yjs updates per session: appended as they arrive, compacted into one snapshot.

Every accepted update is committed before it is published (``append`` waits for the
commit), so a process or a late joiner that loads a session from the database never
misses an update that some member has already seen. Appends from many sockets are
written together, one transaction per batch (a group commit), which keeps a busy
session at a few commits per second per process instead of one per keystroke.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pycrdt import Doc
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.executors import Executors
from server.store.collab_tables import CollabUpdate

log = logging.getLogger(__name__)

# Rows deleted per statement while compacting, so no statement carries an enormous IN list.
DELETE_CHUNK_ROWS = 500


@dataclass(frozen=True)
class Stored:
    rows: int
    bytes: int


def merge(updates: list[bytes]) -> bytes:
    """One update equal to all of them, with deleted content garbage-collected (runs in a pool)."""
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc.get_update()


class UpdateStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], executors: Executors):
        self._db = sessions
        self._executors = executors
        self._queue: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task | None = None

    async def append(self, session_id: str, update: bytes) -> None:
        """Store one update; returns once it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((session_id, update, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="collab-updates-writer")
        await future

    async def _write_batches(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._db() as db:
                    db.add_all([CollabUpdate(session_id=sid, kind="update", data=data) for sid, data, _ in batch])
                    await db.commit()
            except Exception as exc:  # each waiting op reports the failure to its own client
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def load(self, session_id: str) -> list[bytes]:
        """Every stored update of a session (the snapshot first), in the order stored."""
        async with self._db() as db:
            rows = await db.scalars(select(CollabUpdate.data).where(CollabUpdate.session_id == session_id)
                                    .order_by(CollabUpdate.id))
            return list(rows)

    async def size(self, session_id: str) -> Stored:
        """How many rows and bytes a session's updates take."""
        async with self._db() as db:
            rows, size = (await db.execute(
                select(func.count(), func.coalesce(func.sum(func.length(CollabUpdate.data)), 0))
                .where(CollabUpdate.session_id == session_id))).one()
        return Stored(int(rows), int(size))

    async def compact(self, session_id: str) -> Stored:
        """Replace the stored updates by one snapshot of their merge; returns the size after.

        Only the rows read are deleted (by id), so an update committed meanwhile, by this
        process or another, is kept; merging is idempotent, so overlap does no harm.
        """
        async with self._db() as db:
            rows = (await db.execute(select(CollabUpdate.id, CollabUpdate.data)
                                     .where(CollabUpdate.session_id == session_id)
                                     .order_by(CollabUpdate.id))).all()
        if len(rows) > 1:
            snapshot = await self._executors.run_cpu(merge, [data for _, data in rows])
            ids = [row_id for row_id, _ in rows]
            async with self._db() as db:
                db.add(CollabUpdate(session_id=session_id, kind="snapshot", data=snapshot))
                for start in range(0, len(ids), DELETE_CHUNK_ROWS):
                    await db.execute(delete(CollabUpdate).where(CollabUpdate.id.in_(ids[start:start + DELETE_CHUNK_ROWS])))
                await db.commit()
        return await self.size(session_id)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
