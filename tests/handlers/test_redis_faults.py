"""Redis stopped and restarted under two web processes on MariaDB (a redis-server of the test's own):
what keeps working, what answers 503, and that no event is dropped after a restart."""

import asyncio
import time
import uuid

import pytest

from server.redis_client import connect
from tests.conftest import make_settings
from tests.support.backends import Backend, mariadb_database, require_services
from tests.support.client import ApiClient
from tests.support.redis_server import own_redis
from tests.support.server import running_server
from tests.support.ws import WsClient

pytestmark = pytest.mark.services


@pytest.fixture
def redis_server(tmp_path):
    require_services()
    with own_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def shared_settings(redis_server, tmp_path):
    """Settings for two web processes sharing one MariaDB database, the test's Redis and a data dir."""
    with mariadb_database() as url:
        backend = Backend("services", url, redis_server.url, f"va:faults:{uuid.uuid4().hex[:8]}:")
        yield make_settings(backend, tmp_path / "data")


async def test_a_client_survives_a_redis_restart_without_failing_a_call(redis_server):
    client = connect(redis_server.url)
    try:
        assert await client.ping()
        redis_server.stop()
        redis_server.start()
        # The pooled connection is dead; the call is retried on a fresh one instead of failing once.
        assert await client.ping()
    finally:
        await client.aclose()


async def mention_alice(ws: WsClient, room: str, text: str) -> None:
    reply = await ws.request("chat.send", room=room, text=f"@alice {text}", timeout=10)
    assert reply["type"] == "ack", reply


async def test_after_a_redis_restart_every_event_still_arrives_on_both_processes(redis_server, shared_settings):
    async with running_server(shared_settings) as (web1, _), running_server(shared_settings) as (web2, _):
        alice, bob = ApiClient(web1), ApiClient(web2)
        try:
            alice_id = (await alice.register("alice"))["id"]
            await bob.register("bob")
            topic = f"user:{alice_id}"
            on_web1, on_web2 = await WsClient.connect(web1, api=alice), await WsClient.connect(web2, api=alice)
            for ws in (on_web1, on_web2):
                assert (await ws.request("sub", topic=topic))["type"] == "ack"
            sender = await WsClient.connect(web2, api=bob)
            await sender.request("sub", topic="room:lobby")
            for i in range(3):
                await mention_alice(sender, "lobby", f"before {i}")
            for ws in (on_web1, on_web2):
                assert [e["seq"] for e in await ws.collect("notify", 3)] == [1, 2, 3]

            redis_server.stop()
            redis_server.start()  # empty: every seq counter starts again from 1

            for i in range(4):
                await mention_alice(sender, "lobby", f"after {i}")
            for ws in (on_web1, on_web2):
                reset = await ws.wait_type("reset", timeout=10, topic=topic)
                assert reset["seq"] == 0 and reset["epoch"]
                after = await ws.collect("notify", 4, timeout=10)
                assert [e["seq"] for e in after] == [1, 2, 3, 4]
                assert [e["text"] for e in after] == [f"@alice after {i}" for i in range(4)]
            for ws in (on_web1, on_web2, sender):
                ws.close()
        finally:
            await alice.aclose()
            await bob.aclose()


async def test_during_a_redis_outage_signing_in_and_reading_work_and_live_updates_say_503(
        redis_server, shared_settings):
    async with running_server(shared_settings) as (web1, _), running_server(shared_settings) as (web2, _):
        alice, bob = ApiClient(web1), ApiClient(web2)
        script = None
        try:
            alice_id = (await alice.register("alice"))["id"]
            await bob.register("bob")
            token = (await alice.post("/api/tokens", {"name": "script"})).json()["token"]
            listener = await WsClient.connect(web1, api=alice)
            await listener.request("sub", topic="room:lobby")
            sender = await WsClient.connect(web2, api=bob)
            await sender.request("sub", topic="room:lobby")

            redis_server.stop()
            started = time.monotonic()
            script = ApiClient(web2, token=token)
            me = await script.get("/api/me")  # a token-authenticated request
            assert me.status_code == 200 and me.json()["user"]["username"] == "alice", me.text
            assert (await bob.post("/api/auth/logout")).status_code == 204
            assert (await bob.login("bob")).status_code == 200  # signing in (its throttle counts in-process)
            assert (await alice.get("/api/posts")).status_code == 200
            assert (await alice.get("/api/rooms/lobby/messages")).status_code == 200
            assert (await alice.get("/api/notifications")).status_code == 200
            # A new socket opens and answers; a hub topic cannot be watched until Redis is back: 503-like.
            fresh = await WsClient.connect(web2, token=token)
            assert (await fresh.request("ping"))["type"] == "pong"
            refused = await fresh.request("sub", topic=f"user:{alice_id}", timeout=10)
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            # A chat message is stored (and acknowledged) though it cannot be published now.
            assert (await sender.request("chat.send", room="lobby", text="while Redis is down", timeout=10)
                    )["type"] == "ack"
            assert time.monotonic() - started < 20

            redis_server.start()
            # ...and reaches the other process's socket once Redis is back (read back from the database).
            message = await listener.wait_type("chat.msg", timeout=15)
            assert message["message"]["text"] == "while Redis is down"
            assert (await fresh.request("sub", topic=f"user:{alice_id}", timeout=10))["type"] == "ack"
            for ws in (listener, sender, fresh):
                ws.close()
        finally:
            for client in (alice, bob, script):
                if client is not None:
                    await client.aclose()


async def test_a_token_revoked_while_redis_is_away_stays_revoked_when_it_returns(redis_server, shared_settings):
    """Redis out of reach with its data kept: the principal it cached must not outlive a revocation made
    meanwhile (the delete that could not reach Redis is replayed when it answers again)."""
    async with running_server(shared_settings) as (web1, _), running_server(shared_settings) as (web2, _):
        alice = ApiClient(web1)
        script = None
        try:
            await alice.register("alice")
            token_reply = (await alice.post("/api/tokens", {"name": "script"})).json()
            script = ApiClient(web2, token=token_reply["token"])
            assert (await script.get("/api/me")).status_code == 200  # its principal is now cached in Redis

            redis_server.stop(keep_data=True)
            assert (await alice.delete(f"/api/tokens/{token_reply['api_token']['id']}")).status_code == 204
            assert (await script.get("/api/me")).status_code == 401
            redis_server.start()  # with the principal cached before the outage

            await asyncio.sleep(2.5)  # past the cache's retry interval: both processes ask Redis again
            assert (await alice.get("/api/me")).status_code == 200  # web1 replays its delete first
            for _ in range(3):
                assert (await script.get("/api/me")).status_code == 401
        finally:
            await alice.aclose()
            if script is not None:
                await script.aclose()
