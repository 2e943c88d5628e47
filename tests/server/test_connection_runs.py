"""A socket's side of a stored batch: a run of events goes out as the events would, each once, in seq order."""

from __future__ import annotations

import asyncio

from server.hub import MemoryHub
from server.hub.frames import decode, encode, with_topic
from server.realtime import Connection, OpRegistry
from server.realtime.flusher import Flusher
from server.topics import TopicPolicy

TOPIC = "room:runs"


async def anyone(_principal, _ident) -> bool:
    return True


def event(seq: int) -> tuple[int, bytes]:
    return seq, with_topic(encode({"type": "chat.msg", "text": f"m{seq}"}), TOPIC, seq)


def run_of(*seqs: int) -> tuple[list[tuple[int, bytes]], bytes]:
    events = [event(seq) for seq in seqs]
    return events, b"".join(frame for _seq, frame in events)


async def socket_on(hub: MemoryHub) -> tuple[Connection, list[bytes]]:
    topics = TopicPolicy()
    topics.register("room", anyone)
    sent: list[bytes] = []
    connection = Connection(None, hub, topics, OpRegistry(), None, send=sent.append, close=lambda _c, _r: None,
                            flusher=Flusher(), max_frames_per_sec=1000, max_send_buffer_bytes=1 << 20)
    await connection.subscribe(TOPIC)
    await asyncio.sleep(0.02)  # the subscription's ack goes out
    sent.clear()
    return connection, sent


def seqs_sent(sent: list[bytes]) -> list[int]:
    seqs = []
    for frame in sent:
        decoded = decode(frame)
        seqs += [e["seq"] for e in (decoded if isinstance(decoded, list) else [decoded])]
    return seqs


async def test_a_run_leaves_as_one_array_frame_with_whatever_else_waits():
    connection, sent = await socket_on(MemoryHub())
    connection.deliver(TOPIC, 1, event(1)[1])
    connection.deliver_run(TOPIC, *run_of(2, 3, 4))
    await asyncio.sleep(0.02)
    assert len(sent) == 1
    assert [e["text"] for e in decode(sent[0])] == ["m1", "m2", "m3", "m4"]


async def test_a_run_alone_is_still_an_array_and_a_single_event_is_not():
    connection, sent = await socket_on(MemoryHub())
    connection.deliver_run(TOPIC, *run_of(1, 2))
    await asyncio.sleep(0.02)
    connection.deliver(TOPIC, 3, event(3)[1])
    await asyncio.sleep(0.02)
    assert isinstance(decode(sent[0]), list) and isinstance(decode(sent[1]), dict)
    assert seqs_sent(sent) == [1, 2, 3]


async def test_events_already_seen_are_not_sent_twice():
    connection, sent = await socket_on(MemoryHub())
    connection.deliver_run(TOPIC, *run_of(1, 2))
    connection.deliver_run(TOPIC, *run_of(2, 3, 4))  # a backfill delivered 2 meanwhile
    connection.deliver_run(TOPIC, *run_of(3, 4))
    await asyncio.sleep(0.02)
    assert seqs_sent(sent) == [1, 2, 3, 4]
