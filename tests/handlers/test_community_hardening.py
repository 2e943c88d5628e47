"""Community hardening: likes and follows told once and grouped, notifications that follow their message,
hidden things hidden on every path (both backends)."""

from __future__ import annotations

from tests.handlers.test_community import publish
from tests.support.jobs import finished_job
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server
from tests.support.ws import WsClient


async def test_likes_and_follows_are_told_once_and_likes_of_a_post_grouped(users, gen_server):
    alice, bob, carol = await users("alice"), await users("bob"), await users("carol")
    post = await publish(alice, await finished_job(alice))
    ws = await WsClient.connect(gen_server, api=alice)
    try:
        me = (await alice.get("/api/me")).json()["user"]
        await ws.request("sub", topic=f"user:{me['id']}")
        like = f"/api/posts/{post['id']}/like"
        for _ in range(3):  # a loop of like and unlike
            await bob.put(like)
            await bob.delete(like)
        await bob.put(like)
        for _ in range(2):
            await bob.put("/api/users/alice/follow")
            await bob.delete("/api/users/alice/follow")
        first = await ws.wait_type("notify", kind="like")
        assert first["notification"]["count"] == 1 and first["replaces"] is None
        await carol.put(like)
        grouped = await ws.wait_type("notify", kind="like")
        assert grouped["from"]["username"] == "carol" and grouped["replaces"] == first["id"]
        assert grouped["notification"]["count"] == 2
        assert grouped["notification"]["summary"] == "carol and 1 other liked your post"
        listing = (await alice.get("/api/notifications")).json()
        assert [(n["kind"], n["count"]) for n in listing["notifications"]] == [("like", 2), ("follow", 1)]
        assert listing["unread"] == 2
        assert [e.get("kind") for e in ws.events if e.get("type") == "notify"] == ["follow"]
    finally:
        ws.close()


async def test_notifications_follow_their_message_and_hidden_messages_cannot_be_edited(gen_settings):
    async with running_server(gen_settings) as (base_url, runtime):
        alice, bob, mona = ApiClient(base_url), ApiClient(base_url), ApiClient(base_url)
        sockets = []
        try:
            for client, name in ((alice, "alice"), (bob, "bob"), (mona, "mona")):
                await client.register(name)
            await runtime.users.set_moderator("mona", True)
            post = await publish(alice, await finished_job(alice))
            room = post["room"]
            ws_alice, ws_bob = await WsClient.connect(base_url, api=alice), await WsClient.connect(base_url, api=bob)
            sockets += [ws_alice, ws_bob]
            me = (await alice.get("/api/me")).json()["user"]
            await ws_alice.request("sub", topic=f"user:{me['id']}")
            await ws_alice.request("sub", topic=f"room:{room}")
            await ws_bob.request("sub", topic=f"room:{room}")
            rude = (await ws_bob.request("chat.send", room=room, text="@alice something rude"))["message"]
            mention = await ws_alice.wait_type("notify", kind="mention")
            # Named by the artwork, not by the room's internal name.
            assert mention["notification"]["post"] == post["id"]
            assert mention["notification"]["post_title"] == post["title"]

            edited = await ws_bob.request("chat.edit", room=room, message=rude["id"], text="@alice something kind")
            assert edited["type"] == "ack"
            await ws_alice.wait_type("chat.edited")
            changed = await ws_alice.wait_type("notify.changed")
            assert changed["text"] == "@alice something kind"
            listed = (await alice.get("/api/notifications")).json()["notifications"]
            assert {n["text"] for n in listed} == {"@alice something kind"}
            assert {n["post_title"] for n in listed} == {post["title"]}

            # Hidden by a moderator: gone from the notifications, and its author may not edit it back into view.
            await mona.post(f"/api/moderation/message/{rude['id']}/hide")
            await ws_alice.wait_type("chat.deleted")
            removed = await ws_alice.wait_type("notify.removed")
            assert removed["ids"] == [mention["id"]] and removed["unread"] == 0
            refused = await ws_bob.request("chat.edit", room=room, message=rude["id"], text="@alice back again")
            assert refused["type"] == "error" and refused["code"] == "message_hidden"
            await ws_alice.request("ping")
            assert [e for e in ws_alice.events if e.get("type") == "chat.edited"] == []
            assert (await alice.get("/api/notifications")).json()["notifications"] == []

            # Deleted: the same.
            other = (await ws_bob.request("chat.send", room=room, text="second thoughts"))["message"]
            await ws_alice.wait_type("notify", kind="message")
            await ws_bob.request("chat.delete", room=room, message=other["id"])
            await ws_alice.wait_type("notify.removed")
            assert (await alice.get("/api/notifications")).json()["notifications"] == []

            # An edit that takes the mention out takes its highlight and its notification with it.
            ping = (await ws_bob.request("chat.send", room=room, text="@mona look"))["message"]
            assert ping["mentions"] == ["mona"]
            unping = await ws_bob.request("chat.edit", room=room, message=ping["id"], text="never mind")
            assert unping["message"]["mentions"] == []
            assert [n for n in (await mona.get("/api/notifications")).json()["notifications"]
                    if n["kind"] == "mention"] == []
            # The post's owner is still told of the message in her post's room, with the new text.
            listed = (await alice.get("/api/notifications")).json()["notifications"]
            assert [n["text"] for n in listed] == ["never mind"]

            # A hidden post's room shows nobody who is in it, except to its owner and moderators.
            await mona.post(f"/api/moderation/post/{post['id']}/hide")
            hidden_presence = await bob.get(f"/api/rooms/{room}/presence")
            assert hidden_presence.status_code == 404 and error_code(hidden_presence) == "not_found"
            assert (await alice.get(f"/api/rooms/{room}/presence")).status_code == 200
            assert (await mona.get(f"/api/rooms/{room}/presence")).status_code == 200
        finally:
            for ws in sockets:
                ws.close()
            for client in (alice, bob, mona):
                await client.aclose()


async def test_user_search_by_name_start_for_mentions(users, gen_server):
    ana = await users("ana_lee")
    await users("anna")
    await users("bob")
    found = await ana.get("/api/users", params={"q": "an"})
    assert [u["username"] for u in found.json()["users"]] == ["ana_lee", "anna"]
    # `_` is a letter of the name here, not LIKE's wildcard; a leading @ is what was typed.
    found = await ana.get("/api/users", params={"q": "@ana_"})
    assert [u["username"] for u in found.json()["users"]] == ["ana_lee"]
    bad = await ana.get("/api/users", params={"q": "a%"})
    assert bad.status_code == 400 and bad.json()["error"]["data"]["field"] == "q"
    stranger = ApiClient(gen_server)
    try:
        assert (await stranger.get("/api/users", params={"q": "an"})).status_code == 401
    finally:
        await stranger.aclose()
