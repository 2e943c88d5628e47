"""Live chat over the real WebSocket, on both backends."""


import msgpack
import pytest
from sqlalchemy import update
from tornado.httpclient import HTTPClientError

from server.store.models import User
from tests.support.ws import WsClient


@pytest.fixture
async def connect(server):
    sockets = []

    async def open_socket(api=None, **kwargs):
        ws = await WsClient.connect(server, api=api, **kwargs)
        sockets.append(ws)
        return ws

    yield open_socket
    for ws in sockets:
        ws.close()


async def signed_in(new_client, name):
    api = new_client()
    await api.register(name)
    return api


async def test_anonymous_reads_but_cannot_send(connect):
    ws = await connect()
    ack = await ws.request("sub", topic="room:lobby")
    assert ack["type"] == "ack" and ack["seq"] == 0
    assert (await ws.wait_type("presence"))["users"] == []
    refused = await ws.request("chat.send", room="lobby", text="hi")
    assert refused["type"] == "error" and refused["code"] == "unauthenticated"
    assert (await ws.request("ping"))["type"] == "pong"


async def test_messages_reach_everyone_in_order_and_retries_store_once(connect, new_client, server):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await connect(alice), await connect(bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:lobby")
    sent = []
    for i in range(5):
        ack = await ws_a.request("chat.send", room="lobby", text=f"hello {i} 🎨")
        sent.append(ack["message"])
    received = await ws_b.collect("chat.msg", 5)
    assert [e["message"]["text"] for e in received] == [f"hello {i} 🎨" for i in range(5)]
    assert [e["seq"] for e in received] == [1, 2, 3, 4, 5]
    assert received[0]["topic"] == "room:lobby" and received[0]["message"]["author"]["username"] == "alice"

    await ws_a.send("chat.send", room="lobby", text="only once", ref="client-42")
    await ws_a.send("chat.send", room="lobby", text="only once", ref="client-42")
    first = await ws_a.wait_for(lambda e: e.get("ref") == "client-42")
    second = await ws_a.wait_for(lambda e: e.get("ref") == "client-42")
    assert first["message"]["id"] == second["message"]["id"]
    history = (await alice.get("/api/rooms/lobby/messages")).json()["messages"]
    assert [m["text"] for m in history].count("only once") == 1


async def test_resume_replays_exactly_what_was_missed(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await connect(alice), await connect(bob)
    await ws_a.request("sub", topic="room:resume")
    await ws_b.request("sub", topic="room:resume")
    await ws_b.request("chat.send", room="resume", text="before")  # alice's 20 missed stay within her send limit
    last_seen = (await ws_b.wait_type("chat.msg"))["seq"]
    ws_b.close()
    for i in range(20):
        await ws_a.request("chat.send", room="resume", text=f"missed {i}")
    again = await connect(bob)
    ack = await again.request("sub", topic="room:resume", since=last_seen)
    assert ack["seq"] == last_seen + 20
    replayed = await again.collect("chat.msg", 20)
    assert [e["message"]["text"] for e in replayed] == [f"missed {i}" for i in range(20)]
    assert [e["seq"] for e in replayed] == list(range(last_seen + 1, last_seen + 21))
    await again.request("chat.send", room="resume", text="live again")
    live = await again.wait_type("chat.msg")
    assert live["message"]["text"] == "live again" and live["seq"] == last_seen + 21
    assert not [e for e in again.events if e.get("type") == "chat.msg"]  # no duplicates


async def test_edit_delete_and_moderation(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await connect(alice), await connect(bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:mod")
    message = (await ws_a.request("chat.send", room="mod", text="typo heer"))["message"]
    forbidden = await ws_b.request("chat.edit", room="mod", message=message["id"], text="hacked")
    assert forbidden["type"] == "error" and forbidden["code"] == "forbidden"
    assert (await ws_a.request("chat.edit", room="mod", message=message["id"], text="typo here"))["type"] == "ack"
    edited = await ws_b.wait_type("chat.edited")
    assert edited["message"]["text"] == "typo here" and edited["message"]["edited_at"]
    assert (await ws_b.request("chat.delete", room="mod", message=message["id"]))["code"] == "forbidden"
    assert (await ws_a.request("chat.delete", room="mod", message=message["id"]))["type"] == "ack"
    deleted = await ws_b.wait_type("chat.deleted")
    assert deleted["message"] == {"id": message["id"], "room": "mod", "deleted": True}
    missing = await ws_a.request("chat.delete", room="mod", message=message["id"])
    assert missing["code"] == "not_found"
    assert (await alice.get("/api/rooms/mod/messages")).json()["messages"] == []


async def test_moderators_delete_any_message(connect, new_client, server, settings):
    from server.store.database import create_engine
    alice, mod = await signed_in(new_client, "alice"), await signed_in(new_client, "moddy")
    engine = create_engine(settings.effective_database_url)
    async with engine.begin() as conn:
        await conn.execute(update(User).where(User.username == "moddy").values(is_moderator=True))
    await engine.dispose()
    await mod.login("moddy")  # a new session sees the new role
    ws_a, ws_m = await connect(alice), await connect(mod)
    for ws in (ws_a, ws_m):
        await ws.request("sub", topic="room:modroom")
    message = (await ws_a.request("chat.send", room="modroom", text="spam"))["message"]
    assert (await ws_m.request("chat.delete", room="modroom", message=message["id"]))["type"] == "ack"


async def test_history_pages_newest_first(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    sockets = [await connect(alice), await connect(bob)]
    for ws in sockets:
        await ws.request("sub", topic="room:paged")
    for i in range(25):
        # Two authors, so 25 messages stay within the per-user send limit.
        assert (await sockets[i % 2].request("chat.send", room="paged", text=f"m{i}"))["type"] == "ack", i
    first = (await alice.get("/api/rooms/paged/messages?limit=10")).json()
    assert [m["text"] for m in first["messages"]] == [f"m{i}" for i in range(24, 14, -1)]
    second = (await alice.get(f"/api/rooms/paged/messages?limit=10&before={first['next_cursor']}")).json()
    third = (await alice.get(f"/api/rooms/paged/messages?limit=10&before={second['next_cursor']}")).json()
    assert [m["text"] for m in third["messages"]] == [f"m{i}" for i in range(4, -1, -1)]
    assert third["next_cursor"] is None
    bad = await alice.get("/api/rooms/paged/messages?before=abc")
    assert bad.status_code == 400
    assert (await alice.get("/api/rooms/nobody-here/messages")).json() == {"messages": [], "next_cursor": None}


async def test_presence_typing_and_mentions(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a = await connect(alice)
    await ws_a.request("sub", topic="room:cafe")
    bob_user = (await bob.get("/api/me")).json()["user"]
    ws_b = await connect(bob)
    await ws_b.request("sub", topic=f"user:{bob_user['id']}")
    await ws_b.request("sub", topic="room:cafe")
    joined = await ws_a.wait_for(lambda e: e.get("type") == "presence" and (e.get("joined") or {}).get("username") == "bob")
    assert sorted(u["username"] for u in joined["users"]) == ["alice", "bob"]
    await ws_a.send("typing", room="cafe")
    typing = await ws_b.wait_type("typing")
    assert typing["user"]["username"] == "alice" and "seq" not in typing
    await ws_a.request("chat.send", room="cafe", text="hey @Bob look")
    notify = await ws_b.wait_type("notify")
    assert notify["kind"] == "mention" and notify["room"] == "cafe" and notify["from"]["username"] == "alice"
    assert notify["topic"] == f"user:{bob_user['id']}" and notify["seq"] == 1
    ws_b.close()
    left = await ws_a.wait_for(lambda e: e.get("type") == "presence" and e.get("left"))
    assert left["left"]["username"] == "bob" and [u["username"] for u in left["users"]] == ["alice"]


async def test_bad_input_is_refused_and_the_room_keeps_working(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await connect(alice), await connect(bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:calm")
    await ws_a.send_raw(b"\xc1\xff garbage")
    assert (await ws_a.wait_type("error"))["code"] == "bad_frame"
    await ws_a.send_raw(msgpack.packb([1, 2, 3]))
    assert (await ws_a.wait_type("error"))["code"] == "bad_frame"
    assert (await ws_a.request("launch.rockets"))["code"] == "unknown_op"
    assert (await ws_a.request("sub", topic="nonsense"))["code"] == "bad_topic"
    assert (await ws_a.request("sub", topic="room:UPPER CASE"))["code"] == "bad_topic"
    assert (await ws_a.request("chat.send", room="calm", text=""))["code"] == "invalid_input"
    too_long = await ws_a.request("chat.send", room="calm", text="x" * 2001)
    assert too_long["code"] == "too_long" and too_long["data"] == {"field": "text", "limit": 2000}, too_long
    assert (await ws_a.request("chat.send", room="elsewhere", text="hi"))["code"] == "not_subscribed"
    assert (await ws_a.request("chat.edit", room="calm", message="7", text="x"))["code"] == "invalid_input"
    bob_id = (await bob.get("/api/me")).json()["user"]["id"]
    assert (await ws_a.request("sub", topic=f"user:{bob_id}"))["code"] == "forbidden"
    # The socket still works, and so does the room.
    await ws_a.request("chat.send", room="calm", text="still here")
    assert (await ws_b.wait_type("chat.msg"))["message"]["text"] == "still here"


async def test_send_rate_limit_answers_with_retry_after(connect, new_client):
    alice = await signed_in(new_client, "alice")
    ws = await connect(alice)
    await ws.request("sub", topic="room:fast")
    answers = [await ws.request("chat.send", room="fast", text=f"n{i}") for i in range(22)]
    assert [a["type"] for a in answers[:20]] == ["ack"] * 20
    assert answers[20]["code"] == "rate_limited" and answers[20]["data"]["retry_after"] >= 1


async def test_text_frame_oversize_frame_and_flood_close_with_the_right_codes(connect, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    watcher = await connect(bob)
    await watcher.request("sub", topic="room:storm")

    text_sender = await connect(alice)
    await text_sender.send_raw("hello", binary=False)
    assert await text_sender.closed() == 1003

    big_sender = await connect(alice)
    await big_sender.send_raw(b"\x00" * (64 * 1024 + 1))
    assert await big_sender.closed() == 1009

    flooder = await connect(alice)
    await flooder.request("sub", topic="room:storm")
    for _ in range(10_000):
        try:
            await flooder.send("ping")
        except Exception:
            break
    assert await flooder.closed(10) == 1008

    sender = await connect(alice)
    await sender.request("sub", topic="room:storm")
    await sender.request("chat.send", room="storm", text="after the storm")
    assert (await watcher.wait_type("chat.msg"))["message"]["text"] == "after the storm"


async def test_origin_is_checked_exactly(server):
    for origin in ("http://evil.example", server + ".evil.example", "http://127.0.0.1.evil.example"):
        with pytest.raises(HTTPClientError) as refused:
            await WsClient.connect(server, origin=origin)
        assert refused.value.code == 403


async def test_revoked_token_is_refused_before_the_upgrade(server, new_client):
    alice = await signed_in(new_client, "alice")
    created = (await alice.post("/api/tokens", {"name": "ws"})).json()
    ws = await WsClient.connect(server, token=created["token"])
    assert (await ws.request("ping"))["type"] == "pong"
    ws.close()
    await alice.delete(f"/api/tokens/{created['api_token']['id']}")
    with pytest.raises(HTTPClientError) as refused:
        await WsClient.connect(server, token=created["token"])
    assert refused.value.code == 401


async def test_logging_out_closes_that_sessions_sockets(connect, new_client):
    alice = await signed_in(new_client, "alice")
    other_browser = new_client()
    await other_browser.login("alice")
    ws_here, ws_other = await connect(alice), await connect(other_browser)
    await ws_here.request("sub", topic="room:lobby")
    await ws_other.request("sub", topic="room:lobby")
    assert (await alice.post("/api/auth/logout")).status_code == 204
    assert await ws_here.closed() == 1000
    assert (await ws_other.request("ping"))["type"] == "pong"


async def test_sub_with_since_on_a_watched_topic_still_replays(connect, new_client):
    alice = await signed_in(new_client, "alice")
    ws = await connect(alice)
    await ws.request("sub", topic="room:again")
    for i in range(3):
        await ws.request("chat.send", room="again", text=f"m{i}")
    await ws.collect("chat.msg", 3)
    ack = await ws.request("sub", topic="room:again", since=0)
    assert ack["type"] == "ack"
    replayed = await ws.collect("chat.msg", 3)
    assert [e["message"]["text"] for e in replayed] == ["m0", "m1", "m2"]


async def test_one_sockets_pipelined_messages_keep_their_order(connect, new_client):
    """A socket's next frame is read while its last message waits for its commit: frames sent back to back
    are stored and published in the order sent, each acked, and a refused one among them loses none of
    the others."""
    BURST = 18  # with the first and the refused one, 20: the default send limit per 10 s
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await connect(alice), await connect(bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:pipeline")
    await ws_a.send("chat.send", room="pipeline", text="first use", ref="taken")
    await ws_a.wait_for(lambda e: e.get("ref") == "taken" and e["type"] == "ack")
    for i in range(BURST):
        if i == 8:  # the same ref with other text: refused, never stored
            await ws_a.send("chat.send", room="pipeline", text="other text", ref="taken")
        await ws_a.send("chat.send", room="pipeline", text=f"burst {i}", ref=f"b{i}")
    acks = {}
    refused = None
    while len(acks) < BURST or refused is None:
        event = await ws_a.wait_for(lambda e: e.get("ref") in {f"b{i}" for i in range(BURST)} | {"taken"})
        if event["type"] == "error":
            assert event["ref"] == "taken", event
            refused = event
        else:
            acks[event["ref"]] = event["message"]
    assert refused["code"] == "ref_reused"
    seqs = [acks[f"b{i}"]["seq"] for i in range(BURST)]
    assert seqs == sorted(seqs) and len(set(seqs)) == BURST
    received = await ws_b.collect("chat.msg", BURST + 1)
    assert [e["message"]["text"] for e in received[1:]] == [f"burst {i}" for i in range(BURST)]
    history = (await bob.get("/api/rooms/pipeline/messages?limit=100")).json()["messages"]
    assert "other text" not in [m["text"] for m in history] and len(history) == BURST + 1
