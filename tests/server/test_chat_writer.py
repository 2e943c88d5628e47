"""Chat's group commit: many messages per transaction, seqs consecutive in arrival order, a duplicate ref
alone refused."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from server.chat_writer import MessageWriter, StoredMessage
from server.store.models import Message, Room, User


async def author_with_rooms(runtime, username: str, **last_seqs: int) -> tuple[User, list[Room]]:
    """A user and the rooms they opened (name=its last seq), stored."""
    async with runtime.db() as db:
        author = User(username=username, password_hash="x", display_name=username)
        rooms = [Room(name=name, last_seq=seq) for name, seq in last_seqs.items()]
        db.add_all([author, *rooms])
        await db.flush()
        for room in rooms:
            room.created_by = author.id
        await db.commit()
    return author, rooms


async def test_concurrent_messages_share_transactions_and_keep_seq_order(runtime):
    author, rooms = await author_with_rooms(runtime, "writer", alpha=0, beta=5)
    commits = []

    def count(_conn):
        commits.append(1)

    event.listen(runtime.engine.sync_engine, "commit", count)
    writer = MessageWriter(runtime.db)
    try:
        # 60 senders at once, over two rooms; one reuses a ref the same author already used in that room.
        sends = [writer.insert(rooms[i % 2].id, author.id, f"m{i}", "", f"ref-{i}") for i in range(60)]
        sends.append(writer.insert(rooms[0].id, author.id, "again", "", "ref-0"))
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 60)
    finally:
        event.remove(runtime.engine.sync_engine, "commit", count)
    assert isinstance(results[-1], IntegrityError), results[-1]
    stored = results[:-1]
    assert all(isinstance(m, StoredMessage) for m in stored), [r for r in stored if not isinstance(r, StoredMessage)][:1]
    # Each room's seqs are consecutive from its last_seq, in the order the messages arrived.
    assert [m.seq for m in stored[0::2]] == list(range(1, 31))
    assert [m.seq for m in stored[1::2]] == list(range(6, 36))
    assert all(m.created_seq == m.seq and m.id is not None for m in stored)
    # Far fewer transactions than messages (the first batch may hold one message; the rest wait together),
    # plus one per message of the batch the duplicate ref failed, written again one by one.
    assert len(commits) < 61, len(commits)
    async with runtime.db() as db:
        assert (await db.scalar(select(Room.last_seq).where(Room.id == rooms[0].id))) == 30
        assert (await db.scalar(select(Room.last_seq).where(Room.id == rooms[1].id))) == 35
        texts = list(await db.scalars(select(Message.text).where(Message.room_id == rooms[0].id)
                                      .order_by(Message.seq)))
    assert texts == [f"m{i}" for i in range(0, 60, 2)]


async def test_a_batch_without_duplicates_is_one_transaction(runtime):
    author, (room,) = await author_with_rooms(runtime, "batcher", gamma=0)
    writer = MessageWriter(runtime.db)
    first = asyncio.ensure_future(writer.insert(room.id, author.id, "first", "", None))
    await asyncio.sleep(0)  # the first batch starts with one message; the next 40 queue behind it
    commits = []

    def count(_conn):
        commits.append(1)

    event.listen(runtime.engine.sync_engine, "commit", count)
    try:
        rest = await asyncio.wait_for(asyncio.gather(
            *(writer.insert(room.id, author.id, f"m{i}", "", None) for i in range(40))), 60)
        await first
    finally:
        event.remove(runtime.engine.sync_engine, "commit", count)
    assert [m.seq for m in rest] == list(range(2, 42))
    assert len(commits) <= 2, f"{len(commits)} transactions for 40 messages"


async def test_a_failing_batch_reports_to_every_sender(runtime):
    writer = MessageWriter(runtime.db)
    # No such room: the UPDATE matches nothing and the SELECT finds no seq; every sender learns of it.
    results = await asyncio.wait_for(asyncio.gather(
        *(writer.insert(987654, 1, f"m{i}", "", None) for i in range(3)), return_exceptions=True), 60)
    assert all(isinstance(r, Exception) for r in results), results


async def test_stored_messages_are_what_the_database_holds(runtime):
    # The writer builds its Message objects from the rows it sent (not from an ORM flush): each must carry
    # its own row's id and every field a reader of the database sees, over two rooms in one batch.
    author, rooms = await author_with_rooms(runtime, "mirror", delta=0, eps=7)
    writer = MessageWriter(runtime.db)
    stored = await asyncio.wait_for(asyncio.gather(*(
        writer.insert(rooms[i % 2].id, author.id, f"text {i}", "someone" if i % 3 else "",
                      f"ref-{i}" if i % 4 else None, job_id=f"job{i}" if i % 5 == 0 else None)
        for i in range(30))), 60)
    columns = [c.key for c in Message.__table__.columns]
    async with runtime.db() as db:
        rows = {m.id: m for m in await db.scalars(select(Message))}
    assert len(rows) == 30 and len({m.id for m in stored}) == 30
    for message in stored:
        assert {c: getattr(message, c) for c in columns} == {c: getattr(rows[message.id], c) for c in columns}


async def test_a_batch_larger_than_one_insert_statement_is_stored_whole(runtime):
    # Past 1,000 rows a batch's INSERT is split (SQLite's limit on parameters): every row is still stored once,
    # with its own id, in seq order.
    author, (room,) = await author_with_rooms(runtime, "bulk", bulk=0)
    writer = MessageWriter(runtime.db)
    stored = await asyncio.wait_for(asyncio.gather(
        *(writer.insert(room.id, author.id, f"m{i}", "", None) for i in range(1100))), 120)
    assert [m.seq for m in stored] == list(range(1, 1101))
    async with runtime.db() as db:
        rows = {m.id: m.text for m in await db.scalars(select(Message).where(Message.room_id == room.id))}
    assert rows == {m.id: m.text for m in stored}
    assert len(rows) == 1100
