"""New chat messages written together: one transaction per batch (a group commit).

A busy room used to cost one transaction (and on SQLite one fsync) per message, which
capped stored chat at a few hundred messages a second. Messages that arrive while a
batch commits wait for the next one, and each batch takes its seqs the same way a single
message did: one ``UPDATE rooms SET last_seq = last_seq + n`` per room in the
transaction that stores the rows, so seq order is still commit order and, within a
batch, arrival order. ``insert`` returns once its row is committed, as before.

A batch that fails on a unique index (a retried ``client_ref``) is rolled back whole and
its messages are written again one transaction each, so only the duplicate sees the
IntegrityError (ChatService answers it as a retry) and the others are stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import Message, Room


@dataclass
class _Pending:
    room_id: int
    author_id: int
    text: str
    mentions: str
    client_ref: str | None
    job_id: str | None
    future: asyncio.Future[Message]


class MessageWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task | None = None

    async def insert(self, room_id: int, author_id: int, text: str, mentions: str,
                     client_ref: str | None, job_id: str | None = None) -> Message:
        """Store one message with the room's next seq; returns it once committed (IntegrityError for a
        ``client_ref`` this author already used in the room)."""
        return await self.enqueue(room_id, author_id, text, mentions, client_ref, job_id)

    def enqueue(self, room_id: int, author_id: int, text: str, mentions: str,
                client_ref: str | None, job_id: str | None = None) -> asyncio.Future[Message]:
        """Queue one message for the next batch; the future is its stored row (or the IntegrityError).
        Messages queued one after another get their seqs in that order. Awaiting it through
        ``asyncio.shield`` is what keeps a sender that goes away from cancelling the others' batch."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(room_id, author_id, text, mentions, client_ref, job_id, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="chat-message-writer")
        return asyncio.shield(future)

    async def _write_batches(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                messages = await self._write(batch)
            except IntegrityError:
                await self._write_one_by_one(batch)
                continue
            except Exception as exc:  # each waiting sender reports the failure to its own client
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, message in zip(batch, messages):
                if not item.future.done():
                    item.future.set_result(message)

    async def _write(self, batch: list[_Pending]) -> list[Message]:
        counts: dict[int, int] = {}
        for item in batch:
            counts[item.room_id] = counts.get(item.room_id, 0) + 1
        async with self._db() as db:
            # Rooms in id order, so two processes' batches take the row locks in the same order (no deadlock).
            next_seq: dict[int, int] = {}
            for room_id in sorted(counts):
                last = await self._bump(db, room_id, counts[room_id])
                next_seq[room_id] = last - counts[room_id] + 1
            messages = []
            for item in batch:
                seq = next_seq[item.room_id]
                next_seq[item.room_id] = seq + 1
                messages.append(Message(room_id=item.room_id, author_id=item.author_id, seq=seq, created_seq=seq,
                                        text=item.text, mentions=item.mentions, client_ref=item.client_ref,
                                        job_id=item.job_id))
            db.add_all(messages)
            await db.commit()
        return messages

    async def _write_one_by_one(self, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                message = (await self._write([item]))[0]
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            if not item.future.done():
                item.future.set_result(message)

    @staticmethod
    async def _bump(db: AsyncSession, room_id: int, count: int) -> int:
        """Take ``count`` seqs of a room; returns the last. The UPDATE holds the row lock (MySQL) or the write
        lock (SQLite) until commit, so concurrent writers get consecutive ranges in commit order."""
        await db.execute(update(Room).where(Room.id == room_id).values(last_seq=Room.last_seq + count))
        last = await db.scalar(select(Room.last_seq).where(Room.id == room_id))
        if last is None:
            raise LookupError(f"no room {room_id}")
        return last
