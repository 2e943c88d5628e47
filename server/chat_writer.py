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

A batch is written with SQL statements, not the ORM's unit of work: per message the ORM cost more than the
database did (and on SQLite it inserted row by row, since it needs the ids in parameter order, which SQLite's
RETURNING does not promise). One multi-row INSERT returns each row's id with its (room, seq), which names
the row whatever order the rows come back in. What it stored comes back as plain StoredMessage objects, for
the same reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import Message, Room, utcnow
from server.waiters import settle

_MESSAGES = Message.__table__
_COLUMNS = ("room_id", "author_id", "seq", "created_seq", "text", "mentions", "client_ref", "job_id", "created_at")
# SQLite takes at most 32,766 parameters in one statement.
_ROWS_PER_INSERT = 1000
_ROOMS = Room.__table__
_BUMP = update(_ROOMS).where(_ROOMS.c.id == bindparam("room_id"))
_TAKE_SEQS_RETURNING = _BUMP.values(last_seq=_ROOMS.c.last_seq + bindparam("count")).returning(_ROOMS.c.last_seq)
# MySQL/MariaDB have no UPDATE .. RETURNING; LAST_INSERT_ID(expr) keeps the new value and the server hands it
# back in the UPDATE's own reply (the client's insert id), which saves a SELECT.
_TAKE_SEQS_INTO_INSERT_ID = _BUMP.values(last_seq=func.last_insert_id(_ROOMS.c.last_seq + bindparam("count")))


@dataclass(slots=True)
class StoredMessage:
    """A message as its batch stored it: every column of its row, read as a Message's attributes are (an ORM
    object, with its instance state and an attribute event per read, cost more than its publishing did)."""

    id: int
    room_id: int
    author_id: int
    seq: int
    created_seq: int
    text: str
    mentions: str
    client_ref: str | None
    job_id: str | None
    created_at: dt.datetime
    edited_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    hidden_at: dt.datetime | None = None


@dataclass
class _Pending:
    room_id: int
    author_id: int
    text: str
    mentions: str
    client_ref: str | None
    job_id: str | None
    future: asyncio.Future[StoredMessage]


class MessageWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task | None = None

    async def insert(self, room_id: int, author_id: int, text: str, mentions: str,
                     client_ref: str | None, job_id: str | None = None) -> StoredMessage:
        """Store one message with the room's next seq; returns it once committed (IntegrityError for a
        ``client_ref`` this author already used in the room)."""
        return await self.enqueue(room_id, author_id, text, mentions, client_ref, job_id)

    def enqueue(self, room_id: int, author_id: int, text: str, mentions: str,
                client_ref: str | None, job_id: str | None = None) -> asyncio.Future[StoredMessage]:
        """Queue one message for the next batch; the future is its stored row (or the IntegrityError).
        Messages queued one after another get their seqs in that order. A sender that goes away
        (cancelling its future) cancels nothing else: the batch is the writer task's, which skips
        futures already done."""
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(room_id, author_id, text, mentions, client_ref, job_id, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="chat-message-writer")
        return future

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
                    settle(item.future, failure=exc)
                continue
            for item, message in zip(batch, messages):
                settle(item.future, message)

    async def _write(self, batch: list[_Pending]) -> list[StoredMessage]:
        counts = Counter(item.room_id for item in batch)
        now = utcnow()  # a batch is one commit: its messages are stamped alike
        async with self._db() as db:
            # Rooms in id order, so two processes' batches take the row locks in the same order (no deadlock).
            next_seq: dict[int, int] = {}
            for room_id in sorted(counts):
                next_seq[room_id] = await take_seqs(db, room_id, counts[room_id]) - counts[room_id] + 1
            rows = []
            for item in batch:
                seq = next_seq[item.room_id]
                next_seq[item.room_id] = seq + 1
                rows.append((item.room_id, item.author_id, seq, seq, item.text, item.mentions, item.client_ref,
                             item.job_id))
            ids = {(room_id, seq): ident for ident, room_id, seq in await _insert(db, rows, now)}
            await db.commit()
        return [StoredMessage(ids[row[0], row[2]], *row, now) for row in rows]

    async def _write_one_by_one(self, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                message = (await self._write([item]))[0]
            except Exception as exc:
                settle(item.future, failure=exc)
                continue
            settle(item.future, message)


async def _insert(db: AsyncSession, rows: list[tuple[Any, ...]], created_at: dt.datetime
                  ) -> list[tuple[int, int, int]]:
    """Insert rows of ``_COLUMNS`` (but the last, ``created_at``, which all share); returns each one's
    (id, room_id, seq), in no promised order.

    The statement is written here rather than by SQLAlchemy from a list of dicts: its per-row work (binding
    each row's parameters, processing each returned row) was most of a batch's cost on the event loop. The
    values are plain ints and strs the drivers take as they are, but the time, converted once the way the
    column's type stores it."""
    connection = await db.connection()
    dialect = connection.dialect
    mark = {"qmark": "?", "format": "%s"}[dialect.paramstyle]  # SQLite's and MySQL's drivers
    stamp = _MESSAGES.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    stored_at = stamp(created_at) if stamp is not None else created_at
    values = "(" + ", ".join([mark] * len(_COLUMNS)) + ")"
    returned: list[tuple[int, int, int]] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start:start + _ROWS_PER_INSERT]
        sql = (f"INSERT INTO {_MESSAGES.name} ({', '.join(_COLUMNS)}) VALUES {', '.join([values] * len(chunk))} "
               f"RETURNING id, room_id, seq")
        params = tuple(value for row in chunk for value in (*row, stored_at))
        returned.extend(await connection.exec_driver_sql(sql, params))
    return returned


async def take_seqs(db: AsyncSession, room_id: int, count: int) -> int:
    """Take ``count`` seqs of a room; returns the last. The UPDATE holds the row lock (MySQL) or the write
    lock (SQLite) until commit, so concurrent writers get consecutive ranges in commit order."""
    if db.bind.dialect.update_returning:  # SQLite: the new value comes back with the UPDATE
        last = await db.scalar(_TAKE_SEQS_RETURNING, {"room_id": room_id, "count": count})
    else:
        result = await db.execute(_TAKE_SEQS_INTO_INSERT_ID, {"room_id": room_id, "count": count})
        last = result.lastrowid if result.rowcount else None
    if last is None:
        raise LookupError(f"no room {room_id}")
    return last
