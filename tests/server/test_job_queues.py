"""The queue policy, the same tests against the in-process queue and the Redis Streams queue."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest
import redis.asyncio as redis

from server.jobs.memory_queue import MemoryJobQueue
from server.jobs.queue import JobLive, LatestPreview, QueuedJob, QueueFull, WorkerInfo
from server.jobs.redis_queue import GROUP, RedisJobQueue
from tests.support.backends import REDIS_URL, redis_prefix, require_services

BIG = 1000


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator:
    if request.param == "memory":
        q = MemoryJobQueue()
        yield q
        await q.close()
        return
    require_services()
    with redis_prefix() as prefix:
        client = redis.from_url(REDIS_URL)
        q = RedisJobQueue(client, prefix, heartbeat_secs=0.2)
        q.client, q.prefix = client, prefix  # for the tests that reach into Redis
        yield q
        await q.close()
        await client.aclose()


def job(job_id: str, user: int, model: str = "m", kind: str = "txt2img") -> QueuedJob:
    return QueuedJob(job_id, user, model, kind, time.time())


async def admit(queue, *jobs: QueuedJob, max_global: int = BIG, max_per_user: int = BIG) -> None:
    for item in jobs:
        await queue.admit(item, max_global=max_global, max_per_user=max_per_user)


async def drain(queue, worker: str = "w1", loaded: set[str] = frozenset()) -> list[str]:
    order = []
    while (lease := await queue.take(worker, set(loaded))) is not None:
        order.append(lease.job.job_id)
        assert await queue.ack(lease, worker)
    return order


async def test_round_robin_across_users_newcomers_first(queue):
    await admit(queue, *(job(f"a{i}", 1) for i in range(4)), *(job(f"b{i}", 2) for i in range(2)), job("c0", 3))
    places: dict[str, int] = {}

    async def publish(job_id: str, place: int) -> None:
        places[job_id] = place

    await queue.announce_places(publish)
    assert places == {"a0": 1, "b0": 2, "c0": 3, "a1": 4, "b1": 5, "a2": 6, "a3": 7}
    assert await queue.place("c0") == 3
    first = await queue.take("w1", set())
    assert first.job.job_id == "a0"
    places.clear()
    await queue.announce_places(publish)
    # a0 left; b0 moves up to 1; a1 (user 1 was just served) now waits behind the never-served b0 and c0.
    assert places == {"b0": 1, "c0": 2, "b1": 4, "a1": 3, "a2": 5, "a3": 6}
    await admit(queue, job("d0", 4))  # a newcomer goes before everyone served already
    assert await drain(queue) == ["b0", "c0", "d0", "a1", "b1", "a2", "a3"]


async def test_a_loaded_model_may_go_one_turn_early_never_two(queue):
    await admit(queue, job("a0", 1, "x"), job("a1", 1, "x"), job("b0", 2, "y"), job("b1", 2, "y"),
                job("c0", 3, "y"))
    # Worker loaded with y: the second user's y job jumps user 1 once; then user 1 goes, whatever is loaded.
    assert await drain(queue, loaded={"y"}) == ["b0", "a0", "c0", "b1", "a1"]


async def test_caps_are_atomic_across_concurrent_admissions(queue):
    results = await asyncio.gather(*(queue.admit(job(f"j{i}", i % 3), max_global=5, max_per_user=BIG)
                                     for i in range(20)), return_exceptions=True)
    assert sum(result is None for result in results) == 5
    assert all(isinstance(result, QueueFull) for result in results if result is not None)
    with pytest.raises(QueueFull, match="You already have 2 jobs waiting"):
        await admit(queue, job("x0", 9), job("x1", 9), job("x2", 9), max_per_user=2)
    stats = await queue.stats()
    assert stats.waiting == 7 and stats.waiting_by_model == {"m": 7}


async def test_lanes_of_one_owner_take_turns_and_are_capped_apart(queue):
    # User 7 is the Discord bot account: each Discord user's jobs wait in a lane of their own.
    def bot_job(job_id: str, lane: str) -> QueuedJob:
        return QueuedJob(job_id, 7, "m", "txt2img", time.time(), lane)

    await admit(queue, bot_job("x0", "discord-1"), bot_job("x1", "discord-1"), max_per_user=2)
    with pytest.raises(QueueFull, match="You already have 2 jobs waiting"):
        await admit(queue, bot_job("x2", "discord-1"), max_per_user=2)
    await admit(queue, bot_job("y0", "discord-2"), job("z0", 7), max_per_user=2)  # other lanes still admit
    # Round robin across the lanes as across users: discord-2 does not wait for both of discord-1's jobs.
    first = await queue.take("w1", set())
    assert (first.job.job_id, first.job.user_id, first.job.lane) == ("x0", 7, "discord-1")  # the lane survived
    await queue.hand_back(first, "w1")  # ...and survives being handed back
    assert await drain(queue) == ["x0", "y0", "z0", "x1"]
    # Put back from the database (its row keeps the lane): each waits in its lane, discord-2 (served longer
    # ago) first; in one shared line they would go in the order given.
    assert await queue.readmit([bot_job("r0", "discord-1"), bot_job("r1", "discord-2")]) == 2
    assert await drain(queue) == ["r1", "r0"]


async def test_a_job_admitted_twice_waits_once(queue):
    await admit(queue, job("a0", 1), job("a0", 1))
    assert await queue.readmit([job("a0", 1), job("b0", 2)]) == 1
    assert await drain(queue) == ["a0", "b0"]


async def test_cancel_removes_a_waiting_job_only(queue):
    await admit(queue, job("a0", 1), job("a1", 1))
    lease = await queue.take("w1", set())
    assert not await queue.remove("a0"), "a taken job is the worker's to stop"
    assert await queue.remove("a1") and not await queue.remove("a1")
    assert await queue.known(["a0", "a1"]) == {"a0"}
    await queue.request_cancel("a0")
    assert await queue.cancel_requested("a0")
    assert await queue.ack(lease, "w1") and not await queue.cancel_requested("a0")
    assert await queue.take("w1", set()) is None


async def test_a_cancel_tells_every_listener_whether_it_keeps(queue):
    heard: list[tuple[str, bool]] = []
    queue.on_cancel(lambda job_id, keep: heard.append((job_id, keep)))
    for _ in range(100):  # Redis: the listener subscribes in the background; a message before that is lost
        await queue.request_cancel("a0", keep=True)
        await asyncio.sleep(0.05)
        if heard:
            break
    await queue.request_cancel("b0")
    for _ in range(100):
        if ("b0", False) in heard:
            break
        await asyncio.sleep(0.02)
    assert heard[0] == ("a0", True) and heard[-1] == ("b0", False), heard
    assert await queue.cancel_requested("a0") and await queue.cancel_requested("b0")


async def test_a_handed_back_job_goes_first(queue):
    await admit(queue, job("a0", 1), job("b0", 2), job("c0", 3))
    lease = await queue.take("w1", set())
    assert lease.job.job_id == "a0"
    await queue.hand_back(lease, "w1")
    assert await drain(queue, "w2") == ["a0", "b0", "c0"]


async def test_only_the_lease_holder_acks(queue):
    await admit(queue, job("a0", 1))
    lease = await queue.take("w1", set())
    assert not await queue.ack(lease, "w2")
    info = WorkerInfo(id="w1", host="h", pid=1, devices=["cpu"], slots=1, started_at=time.time())
    assert await queue.heartbeat(info, [lease]) == []
    assert [worker.id for worker in await queue.workers()] == ["w1"]
    assert await queue.alive_workers() == {"w1"}
    assert await queue.ack(lease, "w1")


async def test_lost_state_is_reported_once(queue):
    assert await queue.lost_state() is True
    assert await queue.lost_state() is False


@pytest.mark.services
async def test_a_silent_workers_job_is_taken_over(queue):
    if not isinstance(queue, RedisJobQueue):
        pytest.skip("in-process leases cannot outlive their worker")
    await admit(queue, job("a0", 1))
    lease = await queue.take("w1", set())
    assert await queue.reclaim("w2", idle_secs=0.3) is None, "a lease renewed just now is not up for grabs"
    await asyncio.sleep(0.4)
    taken = await queue.reclaim("w2", idle_secs=0.3)
    assert taken is not None and taken.job == lease.job
    info = WorkerInfo(id="w1", host="h", pid=1, devices=["cpu"], slots=1, started_at=time.time())
    assert await queue.heartbeat(info, [lease]) == ["a0"], "w1 learns it lost the job"
    assert await queue.adopt(lease.job, "w1") is None, "and cannot take it back"
    assert not await queue.ack(lease, "w1")
    assert (await queue.stats()).redeliveries == 1
    assert await queue.ack(taken, "w2")


@pytest.mark.services
async def test_a_malformed_stream_entry_goes_to_the_dead_letters(queue, caplog):
    if not isinstance(queue, RedisJobQueue):
        pytest.skip("the in-process queue has no stream")
    await queue.client.xgroup_create(queue.prefix + "jobs:stream", GROUP, id="0", mkstream=True)
    await queue.client.xadd(queue.prefix + "jobs:stream", {"garbage": "\xff not a job"})
    await admit(queue, job("a0", 1))
    lease = await queue.take("w1", set())
    assert lease.job.job_id == "a0"
    assert "dead letter" in caplog.text
    assert (await queue.stats()).dead_letters == 1
    assert await queue.client.xlen(queue.prefix + "jobs:dead") == 1
    assert await queue.ack(lease, "w1")


@pytest.mark.services
async def test_a_redis_restarted_empty_is_noticed(queue):
    if not isinstance(queue, RedisJobQueue):
        pytest.skip("the in-process queue is lost only with its process")
    assert await queue.lost_state() is True
    await admit(queue, job("a0", 1))
    lease = await queue.take("w1", set())
    keys = [key async for key in queue.client.scan_iter(match=queue.prefix + "*")]
    await queue.client.delete(*keys)  # what a restart without persistence leaves
    assert await queue.lost_state() is True
    info = WorkerInfo(id="w1", host="h", pid=1, devices=["cpu"], slots=1, started_at=time.time())
    assert await queue.heartbeat(info, [lease]) == ["a0"]
    adopted = await queue.adopt(lease.job, "w1")
    assert adopted is not None and await queue.known(["a0"]) == {"a0"}
    assert await queue.ack(adopted, "w1")


async def test_live_reads_place_progress_and_preview_together(queue):
    await admit(queue, job("a0", 1), job("b0", 2))

    async def publish(_job_id: str, _place: int) -> None:
        pass

    await queue.announce_places(publish)
    assert await queue.live("b0") == JobLive(place=2)
    lease = await queue.take("w1", set())
    assert lease.job.job_id == "a0"
    await queue.set_progress("a0", 3, 20)
    frame = LatestPreview(3, 20, "image/webp", b"RIFF-preview")
    await queue.set_preview("a0", frame)
    running = await queue.live("a0")
    assert running.progress == (3, 20) and running.preview is None  # a preview only when asked for
    assert (await queue.live("a0", preview=True)).preview == frame
    assert await queue.live("nobody", preview=True) == JobLive()
