"""`/imagine <prompt>` in a chat room: a public job of the sender that everyone in the room watches."""

import asyncio
import time

import pytest

from tests.support.client import error_code
from tests.support.ws import WsClient


@pytest.fixture
def gen_settings(gen_settings):
    """Small, long renders, and a preview only every 2 s: a late watcher's first frame is the kept one."""
    return gen_settings.model_copy(update={"imagine_steps": 150, "imagine_side_px": 128, "preview_fps": 0.5})


async def test_imagine_renders_for_everyone_and_a_late_joiner_sees_the_preview_at_once(gen_server, users):
    alice, bob, carol = await users("alice"), await users("bob"), await users("carol")
    ws_a, ws_b = await WsClient.connect(gen_server, api=alice), await WsClient.connect(gen_server, api=bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:lobby")
    ack = await ws_a.request("chat.send", room="lobby", text="/imagine a lighthouse at dusk", timeout=30)
    assert ack["type"] == "ack", ack
    job_id = ack["message"]["job"]
    assert job_id and ack["message"]["text"] == "/imagine a lighthouse at dusk"
    seen = await ws_b.wait_for(lambda e: e.get("type") == "chat.msg", 10)
    assert seen["message"]["job"] == job_id
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic=f"job:{job_id}", since=0)
    job = (await carol.get(f"/api/jobs/{job_id}")).json()["job"]
    assert job["public"] is True and job["prompt"] == "a lighthouse at dusk" and job["steps"] == 150
    # Both watch the same render.
    first = await ws_b.wait_for(lambda e: e.get("type") == "gen.preview" and e.get("job") == job_id, 60)
    await ws_a.wait_for(lambda e: e.get("type") == "gen.preview" and e.get("job") == job_id, 30)
    # Carol joins right after a frame: the kept frame reaches her at once, long before the next (2 s later).
    ws_c = await WsClient.connect(gen_server, api=carol)
    await ws_c.request("sub", topic="room:lobby")
    history = (await carol.get("/api/rooms/lobby/messages")).json()["messages"]
    assert history[0]["job"] == job_id
    joined_at = time.monotonic()
    await ws_c.request("sub", topic=f"job:{job_id}")
    kept = await ws_c.wait_for(lambda e: e.get("type") == "gen.preview", 5)
    assert time.monotonic() - joined_at < 1.0, "the newest preview should come at once"
    assert first["step"] <= kept["step"] < kept["total"] and isinstance(kept["image"], bytes)
    assert kept["topic"] == f"job:{job_id}"
    for ws in (ws_a, ws_b, ws_c):
        done = await ws.wait_for(lambda e: e.get("job") == job_id and e["type"] in ("gen.done", "gen.error"), 120)
        assert done["type"] == "gen.done", done
    for ws in (ws_a, ws_b, ws_c):
        ws.close()


async def test_owner_turns_imagine_off_and_it_is_refused_clearly(gen_server, users):
    alice, bob = await users("alice"), await users("bob")
    ws_a, ws_b = await WsClient.connect(gen_server, api=alice), await WsClient.connect(gen_server, api=bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:studio")
    await ws_a.request("chat.send", room="studio", text="my room")  # the first to speak opens (owns) it
    assert (await bob.get("/api/rooms/studio")).json()["room"] == {"name": "studio", "imagine": True, "uploads": False,
                                                                    "can_manage": False, "owned": True}
    refused = await bob.patch("/api/rooms/studio", {"imagine": False})
    assert refused.status_code == 403 and error_code(refused) == "not_owner"
    turned = await alice.patch("/api/rooms/studio", {"imagine": False})
    assert turned.status_code == 200 and turned.json()["room"]["imagine"] is False, turned.text
    told = await ws_b.wait_for(lambda e: e.get("type") == "room.settings", 5)
    assert told["imagine"] is False
    error = await ws_b.request("chat.send", room="studio", text="/imagine a cat")
    assert error["type"] == "error" and error["code"] == "imagine_off" and "turned off" in error["message"]
    empty = await ws_b.request("chat.send", room="lobby-not-subscribed", text="/imagine")
    assert empty["type"] == "error"
    assert (await bob.get("/api/jobs?mine=1")).json()["jobs"] == []
    # Plain text that starts with a slash is a message as any other; other rooms still imagine.
    plain = await ws_b.request("chat.send", room="studio", text="/shrug")
    assert plain["type"] == "ack" and plain["message"]["job"] is None
    await ws_b.request("sub", topic="room:other")
    blank = await ws_b.request("chat.send", room="other", text="/imagine   ")
    assert blank["type"] == "error" and blank["code"] == "invalid_prompt"
    other = await ws_b.request("chat.send", room="other", text="/imagine a cat", timeout=30)
    assert other["type"] == "ack" and other["message"]["job"]
    assert (await alice.patch("/api/rooms/studio", {"imagine": True})).json()["room"]["imagine"] is True
    again = await ws_b.request("chat.send", room="studio", text="/imagine a cat", timeout=30)
    assert again["type"] == "ack" and again["message"]["job"]
    await asyncio.sleep(0)
    for ws in (ws_a, ws_b):
        ws.close()


async def test_the_room_beside_a_post_is_its_authors(gen_server, users):
    alice, bob = await users("alice"), await users("bob")
    ws_a, ws_b = await WsClient.connect(gen_server, api=alice), await WsClient.connect(gen_server, api=bob)
    await ws_a.request("sub", topic="room:lobby")
    ack = await ws_a.request("chat.send", room="lobby", text="/imagine a harbour", timeout=30)
    job_id = ack["message"]["job"]
    await ws_a.request("sub", topic=f"job:{job_id}", since=0)
    done = await ws_a.wait_for(lambda e: e.get("job") == job_id and e["type"] in ("gen.done", "gen.error"), 120)
    assert done["type"] == "gen.done", done
    post = (await alice.post("/api/posts", {"job": job_id, "title": "Harbour"})).json()["post"]
    room = f"post:{post['id']}"
    await ws_b.request("sub", topic=f"room:{room}")
    assert (await ws_b.request("chat.send", room=room, text="first!"))["type"] == "ack"  # bob opened the room...
    assert (await bob.get(f"/api/rooms/{room}")).json()["room"]["can_manage"] is False  # ...but it is alice's
    assert (await bob.patch(f"/api/rooms/{room}", {"imagine": False})).status_code == 403
    assert (await alice.get(f"/api/rooms/{room}")).json()["room"]["can_manage"] is True
    assert (await alice.patch(f"/api/rooms/{room}", {"imagine": False})).json()["room"]["imagine"] is False
    refused = await ws_b.request("chat.send", room=room, text="/imagine a boat")
    assert refused["type"] == "error" and refused["code"] == "imagine_off"
    ws_a.close()
    ws_b.close()
