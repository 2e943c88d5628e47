"""`/stylize <style>` with a photo attached, in a chat room that takes uploads: a public stylize job of the sender
that everyone in the room watches; refused clearly (and nothing stored) where it cannot run."""

from __future__ import annotations

from tests.handlers.test_stylize import create_preset, people, stylize  # noqa: F401 (fixtures)
from tests.support.client import ApiClient, error_code
from tests.support.photos import encode, photo
from tests.support.ws import WsClient

FINAL = ("gen.done", "gen.error", "gen.cancelled")


async def attach(client: ApiClient, room: str, data: bytes, content_type: str = "image/jpeg"):
    return await client.post(f"/api/rooms/{room}/photos", content=data, headers={"Content-Type": content_type})


async def studio(stylize, people) -> tuple[ApiClient, ApiClient, WsClient, WsClient]:
    """The `ink-hero` preset, and the room `studio` that alice opened (so owns), both watching it."""
    base_url, _runtime, _models = stylize
    mona, alice, bob = await people("mona", moderator=True), await people("alice"), await people("bob")
    await create_preset(mona)
    ws_a, ws_b = await WsClient.connect(base_url, api=alice), await WsClient.connect(base_url, api=bob)
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic="room:studio")
    assert (await ws_a.request("chat.send", room="studio", text="my room"))["type"] == "ack"
    return alice, bob, ws_a, ws_b


async def test_a_stylize_in_a_room_renders_for_everyone(stylize, people):
    alice, bob, ws_a, ws_b = await studio(stylize, people)
    settings = (await bob.get("/api/rooms/studio")).json()["room"]
    assert settings["uploads"] is False and settings["imagine"] is True, "photos wait for the owner's yes"
    refused = await attach(bob, "studio", encode(photo(320, 240), "JPEG"))
    assert refused.status_code == 403 and error_code(refused) == "uploads_off"
    assert (await bob.patch("/api/rooms/studio", {"uploads": True})).status_code == 403
    turned = await alice.patch("/api/rooms/studio", {"uploads": True})
    assert turned.status_code == 200 and turned.json()["room"]["uploads"] is True, turned.text
    told = await ws_b.wait_for(lambda e: e.get("type") == "room.settings", 5)
    assert told["uploads"] is True and told["imagine"] is True

    uploaded = await attach(bob, "studio", encode(photo(320, 240), "JPEG"))
    assert uploaded.status_code == 201, uploaded.text
    reference = uploaded.json()["photo"]
    assert (reference["width"], reference["height"]) == (320, 240) and len(reference["id"]) == 64
    ack = await ws_b.request("chat.send", room="studio", text="/stylize ink-hero a fox", photo=reference["id"],
                             timeout=30)
    assert ack["type"] == "ack", ack
    job_id = ack["message"]["job"]
    assert job_id and ack["message"]["text"] == "/stylize ink-hero a fox"
    seen = await ws_a.wait_for(lambda e: e.get("type") == "chat.msg" and e["message"]["job"], 10)
    assert seen["message"]["job"] == job_id and seen["message"]["author"]["username"] == "bob"
    job = (await alice.get(f"/api/jobs/{job_id}")).json()["job"]
    assert job["public"] is True and job["kind"] == "stylize" and job["preset"] == "ink-hero"
    assert job["subject"] == "a fox"
    assert [j["id"] for j in (await bob.get("/api/jobs?mine=1")).json()["jobs"]] == [job_id], "the sender owns it"
    for ws in (ws_a, ws_b):
        await ws.request("sub", topic=f"job:{job_id}", since=0)
    for ws in (ws_a, ws_b):
        done = await ws.wait_for(lambda e: e.get("job") == job_id and e.get("type") in FINAL, 120)
        assert done["type"] == "gen.done", done
    for ws in (ws_a, ws_b):
        ws.close()


async def test_stylize_refusals_are_clear_and_store_nothing(stylize, people):
    alice, bob, ws_a, ws_b = await studio(stylize, people)
    assert (await alice.patch("/api/rooms/studio", {"uploads": True})).json()["room"]["uploads"] is True
    mine = (await attach(bob, "studio", encode(photo(320, 240), "JPEG"))).json()["photo"]["id"]

    # Not an image: refused at the upload, with the reason.
    garbage = await attach(bob, "studio", b"this is not a picture at all" * 10)
    assert garbage.status_code == 415 and error_code(garbage) == "unsupported_media_type", garbage.text
    assert "not an image" in garbage.json()["error"]["message"]
    strip = await attach(bob, "studio", encode(photo(400, 80), "JPEG"))
    assert strip.status_code == 400 and error_code(strip) == "photo_too_wide", strip.text
    wrong_type = await attach(bob, "studio", encode(photo(64, 64)), content_type="text/plain")
    assert wrong_type.status_code == 415, wrong_type.text
    empty = await attach(bob, "studio", b"")
    assert empty.status_code == 400 and error_code(empty) == "not_an_image"

    async def refused(text: str, code: str, **fields) -> None:
        answer = await ws_b.request("chat.send", room="studio", text=text, timeout=30, **fields)
        assert answer["type"] == "error" and answer["code"] == code, (text, answer)
        assert answer["message"]

    await refused("/stylize ink-hero", "not_an_image")  # no photo
    await refused("/stylize no-such-style", "unknown_preset", photo=mine)
    await refused("/stylize", "invalid_preset", photo=mine)
    await refused("/stylize ink-hero", "unknown_photo", photo="0" * 64)  # never uploaded
    alices = (await attach(alice, "studio", encode(photo(320, 240, variant=1), "JPEG"))).json()["photo"]["id"]
    await refused("/stylize ink-hero", "unknown_photo", photo=alices)  # not bob's
    await refused("a photo with words", "invalid_photo", photo=mine)  # a photo goes with /stylize only
    assert (await alice.patch("/api/rooms/studio", {"uploads": False})).json()["room"]["uploads"] is False
    await refused("/stylize ink-hero", "uploads_off", photo=mine)
    assert (await alice.patch("/api/rooms/studio", {"uploads": True, "imagine": False})).status_code == 200
    await refused("/stylize ink-hero", "imagine_off", photo=mine)

    history = (await bob.get("/api/rooms/studio/messages")).json()["messages"]
    assert [m["text"] for m in history] == ["my room"], "a refused command stores no message"
    assert (await bob.get("/api/jobs?mine=1")).json()["jobs"] == []
    # Back on: the same photo still works (nothing was lost).
    assert (await alice.patch("/api/rooms/studio", {"imagine": True})).status_code == 200
    ack = await ws_b.request("chat.send", room="studio", text="/stylize ink-hero", photo=mine, timeout=30)
    assert ack["type"] == "ack" and ack["message"]["job"], ack
    for ws in (ws_a, ws_b):
        ws.close()
