"""Both hub implementations pass the same tests; the Redis one also across two 'processes'."""

import asyncio

import pytest
import redis.asyncio as redis

from server.hub import MemoryHub, RedisHub, Reset
from server.hub.frames import decode


class Recorder:
    def __init__(self):
        self.events = []
        self.arrived = asyncio.Event()

    def reset(self, topic, epoch):
        self.events.append({"type": "reset", "topic": topic, "epoch": epoch})
        self.arrived.set()

    def deliver(self, topic, seq, frame):
        event = decode(frame)
        assert event["topic"] == topic and event.get("seq") == seq
        self.events.append(event)
        self.arrived.set()

    async def wait_for(self, count, timeout=5.0):
        async def enough():
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), timeout)
        return self.events


@pytest.fixture
async def make_hub(backend):
    hubs, clients = [], []

    async def make(history_events=500):
        if backend.services:
            client = redis.from_url(backend.redis_url)
            clients.append(client)
            hub = await RedisHub(client, backend.redis_prefix, history_events=history_events).start()
        else:
            hub = MemoryHub(history_events=history_events)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.close()
    for client in clients:
        await client.aclose()


async def test_sequenced_events_arrive_in_order_with_consecutive_seq(make_hub):
    hub = await make_hub()
    first, second = Recorder(), Recorder()
    await hub.subscribe("job:1", first)
    await hub.subscribe("job:1", second)
    seqs = [await hub.publish("job:1", {"type": "gen.progress", "step": i}) for i in range(10)]
    assert seqs == list(range(1, 11))
    for recorder in (first, second):
        events = await recorder.wait_for(10)
        assert [e["seq"] for e in events] == seqs and [e["step"] for e in events] == list(range(10))
    assert await hub.current_seq("job:1") == 10


async def test_other_topics_and_unsubscribed_get_nothing(make_hub):
    hub = await make_hub()
    watcher, leaver = Recorder(), Recorder()
    await hub.subscribe("job:a", watcher)
    await hub.subscribe("job:a", leaver)
    await hub.unsubscribe("job:a", leaver)
    await hub.publish("job:b", {"type": "x"})
    await hub.publish("job:a", {"type": "y"})
    assert [e["type"] for e in await watcher.wait_for(1)] == ["y"]
    await asyncio.sleep(0.1)
    assert leaver.events == [] and len(watcher.events) == 1


async def test_replay_since_and_reset_when_history_is_gone(make_hub):
    # Redis trims streams approximately (whole nodes of ~100 entries), so publish well past the bound.
    hub = await make_hub(history_events=5)
    for i in range(300):
        await hub.publish("user:7", {"type": "notify", "n": i})
    replayed = await hub.replay("user:7", 298)
    assert [decode(frame)["n"] for _seq, frame in replayed] == [298, 299]
    assert [seq for seq, _frame in replayed] == [299, 300]
    assert await hub.replay("user:7", 300) == []
    too_old = await hub.replay("user:7", 1)
    assert isinstance(too_old, Reset) and too_old.seq == 300 and too_old.epoch
    assert (await hub.replay("user:7", 2)).epoch == too_old.epoch  # the topic's history has one epoch
    from_the_future = await hub.replay("user:7", 999)
    assert isinstance(from_the_future, Reset) and from_the_future.seq == 300


async def test_ephemeral_events_carry_no_seq(make_hub):
    hub = await make_hub()
    recorder = Recorder()
    await hub.subscribe("room:lobby", recorder)
    assert await hub.publish("room:lobby", {"type": "typing", "user": 1}, sequenced=False) is None
    event = (await recorder.wait_for(1))[0]
    assert "seq" not in event and event["type"] == "typing"


async def test_durable_topics_replay_from_their_source(make_hub):
    hub = await make_hub()
    stored = {1: {"type": "chat.msg", "text": "a"}, 2: {"type": "chat.msg", "text": "b"}}

    async def source(topic, since, upto):
        from server.hub.frames import encode, with_topic
        return [(seq, with_topic(encode(event), topic, seq)) for seq, event in sorted(stored.items())
                if seq > since and (upto is None or seq <= upto)]

    async def current(topic):
        return max(stored)

    hub.register_history("room:", source, current)
    recorder = Recorder()
    await hub.subscribe("room:x", recorder)
    await hub.publish_stored([("room:x", 2, {"type": "chat.msg", "text": "b"})])
    assert (await recorder.wait_for(1))[0]["seq"] == 2
    assert [decode(f)["text"] for _s, f in await hub.replay("room:x", 0)] == ["a", "b"]
    assert await hub.current_seq("room:x") == 2


async def test_two_redis_hubs_share_topics_in_order(backend, make_hub):
    if not backend.services:
        pytest.skip("two processes need the Redis hub")
    web1, web2 = await make_hub(), await make_hub()
    on_web2 = Recorder()
    await web2.subscribe("room:shared", on_web2)
    await asyncio.sleep(0.05)
    for i in range(50):
        await web1.publish("job:shared", {"type": "ignored"})
        await (web1 if i % 2 else web2).publish("room:shared", {"type": "n", "i": i}, sequenced=False)
    events = await on_web2.wait_for(50)
    assert [e["i"] for e in events] == list(range(50))


async def test_nothing_is_lost_when_the_pubsub_connection_drops(backend, make_hub):
    if not backend.services:
        pytest.skip("a Redis scenario")
    publisher, subscriber_hub = await make_hub(), await make_hub()
    recorder = Recorder()
    await subscriber_hub.subscribe("job:drop", recorder)
    await asyncio.sleep(0.05)
    for i in range(3):
        await publisher.publish("job:drop", {"type": "gen.progress", "step": i})
    await recorder.wait_for(3)
    admin = redis.from_url(backend.redis_url)
    try:
        killed = await admin.client_kill_filter(_type="pubsub", skipme=True)
        assert killed >= 1
        # Published while the subscriber's pub/sub connection is down: missed by pub/sub.
        for i in range(3, 8):
            await publisher.publish("job:drop", {"type": "gen.progress", "step": i})
        await publisher.publish("job:drop", {"type": "gen.progress", "step": 8})
    finally:
        await admin.aclose()
    events = await recorder.wait_for(9, timeout=10)
    assert [e["step"] for e in events] == list(range(9))
    assert [e["seq"] for e in events] == list(range(1, 10))


class RunRecorder(Recorder):
    """A subscriber that takes runs (as a socket does): records each call's seqs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def deliver(self, topic, seq, frame):
        self.calls.append([seq])
        super().deliver(topic, seq, frame)

    def deliver_run(self, topic, events, joined):
        assert joined == b"".join(frame for _seq, frame in events)
        self.calls.append([seq for seq, _frame in events])
        for seq, frame in events:
            super().deliver(topic, seq, frame)


async def test_a_stored_batch_reaches_each_subscriber_as_one_run_and_a_gap_is_filled_first(make_hub):
    hub = await make_hub()
    stored = {seq: {"type": "chat.msg", "text": f"m{seq}"} for seq in range(1, 7)}

    async def source(topic, since, upto):
        from server.hub.frames import encode, with_topic
        return [(seq, with_topic(encode(event), topic, seq)) for seq, event in sorted(stored.items())
                if seq > since and (upto is None or seq <= upto)]

    async def current(topic):
        return 0

    hub.register_history("room:", source, current)
    runs, plain, other_room = RunRecorder(), Recorder(), RunRecorder()
    await hub.subscribe("room:x", runs)
    await hub.subscribe("room:x", plain)
    await hub.subscribe("room:y", other_room)
    await asyncio.sleep(0.05)
    # One commit's batch, two rooms in it; then a batch after seq 4 went missing (published by nobody yet).
    await hub.publish_stored([("room:x", 1, stored[1]), ("room:y", 1, {"type": "chat.msg", "text": "y1"}),
                              ("room:x", 2, stored[2]), ("room:x", 3, stored[3])])
    await hub.publish_stored([("room:x", 5, stored[5]), ("room:x", 6, stored[6])])
    expected = [f"m{seq}" for seq in range(1, 7)]
    assert [e["text"] for e in await runs.wait_for(6)] == expected
    assert [e["text"] for e in await plain.wait_for(6)] == expected
    assert runs.calls == [[1, 2, 3], [4], [5, 6]]
    assert [e["text"] for e in await other_room.wait_for(1)] == ["y1"]
    assert [e["seq"] for e in runs.events] == list(range(1, 7))
