"""Community end to end: publish from a real generation, gallery and feeds, likes, follows,
the post's room, notifications live, reports and moderation, bad input."""

from tests.support.client import ApiClient, error_code
from tests.support.jobs import finished_job
from tests.support.server import running_server
from tests.support.ws import WsClient


async def publish(client: ApiClient, job: dict, **fields) -> dict:
    body = {"job": job["id"], "title": "Lighthouse", "tags": ["Sea", "dusk"], **fields}
    response = await client.post("/api/posts", json=body)
    assert response.status_code == 201, response.text
    return response.json()["post"]


async def test_publish_shows_settings_and_appears_in_gallery_and_followers_feed(users):
    alice, bob, carol = await users("alice"), await users("bob"), await users("carol")
    assert (await bob.put("/api/users/alice/follow")).json() == {"following": True, "followers": 1}
    job = await finished_job(alice, seed=1234, negative_prompt="fog")
    post = await publish(alice, job, description="Made on **Visionary Art**")
    assert post["title"] == "Lighthouse" and post["tags"] == ["sea", "dusk"]
    assert post["settings"] == {"prompt": "a lighthouse at dusk", "negative_prompt": "fog", "sampler": "Euler",
                                "steps": 2, "guidance": job["guidance"], "width": 64, "height": 64, "seed": 1234,
                                **({"strength": job["strength"]} if "strength" in post["settings"] else {})}
    assert post["model"] == "demo-tiny" and post["room"] == f"post:{post['id']}"
    assert [image["id"] for image in post["images"]] == [image["id"] for image in job["images"]]

    gallery = (await carol.get("/api/posts")).json()
    assert [p["id"] for p in gallery["posts"]] == [post["id"]] and gallery["next_cursor"] is None
    assert (await bob.get("/api/posts?feed=following")).json()["posts"][0]["id"] == post["id"]
    assert (await carol.get("/api/posts?feed=following")).json()["posts"] == []
    assert [p["id"] for p in (await carol.get("/api/posts?tag=sea")).json()["posts"]] == [post["id"]]
    assert (await carol.get("/api/posts?tag=forest")).json()["posts"] == []
    assert [p["id"] for p in (await carol.get("/api/posts?model=demo-tiny")).json()["posts"]] == [post["id"]]
    # The published image is now anyone's to see, the job's other settings stay private.
    anonymous = ApiClient(alice.base_url)
    try:
        assert (await anonymous.get(post["cover"]["thumb_url"])).status_code == 200
        assert (await anonymous.get(f"/api/posts/{post['id']}")).json()["post"]["liked"] is False
        assert (await anonymous.get(f"/api/jobs/{job['id']}")).status_code == 404
    finally:
        await anonymous.aclose()
    profile = (await carol.get("/api/users/alice")).json()
    assert profile["stats"] == {"followers": 1, "following": 0, "posts": 1, "followed": False}
    assert (await bob.get("/api/users/alice")).json()["stats"]["followed"] is True


async def test_likes_toggle_count_once_and_order_top(users):
    alice, bob, carol = await users("alice"), await users("bob"), await users("carol")
    first = await publish(alice, await finished_job(alice), title="first")
    second = await publish(alice, await finished_job(alice), title="second")
    for _ in range(2):
        assert (await bob.put(f"/api/posts/{first['id']}/like")).json() == {"liked": True, "like_count": 1}
    assert (await carol.put(f"/api/posts/{first['id']}/like")).json()["like_count"] == 2
    assert (await carol.delete(f"/api/posts/{first['id']}/like")).json() == {"liked": False, "like_count": 1}
    assert (await carol.delete(f"/api/posts/{first['id']}/like")).json()["like_count"] == 1
    assert (await bob.get(f"/api/posts/{first['id']}")).json()["post"]["liked"] is True
    newest = (await bob.get("/api/posts?limit=1")).json()
    assert [p["id"] for p in newest["posts"]] == [second["id"]] and newest["posts"][0]["liked"] is False
    older = (await bob.get(f"/api/posts?limit=1&cursor={newest['next_cursor']}")).json()
    assert [p["id"] for p in older["posts"]] == [first["id"]] and older["next_cursor"] is None
    # Likes do not invalidate cached pages; a publish does, and top is ordered by likes.
    third = await publish(alice, await finished_job(alice), title="third")
    top = (await bob.get("/api/posts?sort=top&period=week")).json()["posts"]
    assert [p["id"] for p in top] == [first["id"], third["id"], second["id"]]
    assert top[0]["like_count"] == 1 and top[0]["liked"] is True
    # One post a page: the cursor walks across equal like counts (ties by newest) without skipping any.
    walked, cursor = [], ""
    for _ in range(4):
        page = (await bob.get(f"/api/posts?sort=top&limit=1&cursor={cursor}")).json()
        walked += [p["id"] for p in page["posts"]]
        if not (cursor := page["next_cursor"]):
            break
    assert walked == [first["id"], third["id"], second["id"]]


async def test_notifications_live_for_likes_follows_mentions_and_room_messages(users, gen_server):
    alice, bob = await users("alice"), await users("bob")
    post = await publish(alice, await finished_job(alice))
    ws_alice = await WsClient.connect(gen_server, api=alice)
    ws_bob = await WsClient.connect(gen_server, api=bob)
    try:
        me = (await alice.get("/api/me")).json()["user"]
        assert (await ws_alice.request("sub", topic=f"user:{me['id']}"))["type"] == "ack"
        await bob.put(f"/api/posts/{post['id']}/like")
        like = await ws_alice.wait_type("notify", kind="like")
        assert like["from"]["username"] == "bob" and like["post"] == post["id"] and like["unread"] == 1
        await bob.put("/api/users/alice/follow")
        assert (await ws_alice.wait_type("notify", kind="follow"))["unread"] == 2
        assert (await ws_bob.request("sub", topic=f"room:{post['room']}"))["type"] == "ack"
        assert (await ws_bob.request("chat.send", room=post["room"], text="what a sky"))["type"] == "ack"
        message = await ws_alice.wait_type("notify", kind="message")
        assert message["room"] == post["room"] and message["text"] == "what a sky"
        await ws_bob.request("chat.send", room=post["room"], text="@alice how many steps?")
        mention = await ws_alice.wait_type("notify", kind="mention")
        assert mention["unread"] == 4
        listing = (await alice.get("/api/notifications")).json()
        assert [n["kind"] for n in listing["notifications"]] == ["mention", "message", "follow", "like"]
        assert listing["unread"] == 4
        first_id = listing["notifications"][-1]["id"]
        assert (await alice.post("/api/notifications/read", json={"ids": [first_id]})).json() == {"unread": 3}
        read = await ws_alice.wait_type("notify.read")
        assert read["ids"] == [first_id] and read["unread"] == 3
        assert (await alice.post("/api/notifications/read", json={})).json() == {"unread": 0}
        assert (await alice.post("/api/notifications/read", json={"ids": "all"})).status_code == 400
        # Nobody is told about their own doings.
        await alice.put(f"/api/posts/{post['id']}/like")
        assert (await alice.get("/api/notifications")).json()["unread"] == 0
    finally:
        ws_alice.close()
        ws_bob.close()


async def test_bad_input_refused(users):
    alice, bob = await users("alice"), await users("bob")
    job = await finished_job(alice)
    response = await bob.post("/api/posts", json={"job": job["id"], "title": "mine now"})
    assert response.status_code == 403 and error_code(response) == "forbidden"
    huge = await alice.post("/api/posts", json={"job": job["id"], "title": "big", "description": "x" * 1_100_000})
    assert huge.status_code == 413 and error_code(huge) == "payload_too_large"
    long = await alice.post("/api/posts", json={"job": job["id"], "title": "long", "description": "x" * 5001})
    assert long.status_code == 400 and error_code(long) == "too_long"
    for body, code in [({"job": job["id"]}, "invalid_input"), ({"job": job["id"], "title": "t", "tags": "a"}, "invalid_input"),
                       ({"job": job["id"], "title": "t", "images": ["nope"]}, "not_in_job"),
                       ({"job": "missing", "title": "t"}, "not_found")]:
        response = await alice.post("/api/posts", json=body)
        assert error_code(response) == code, (body, response.text)
    post = await publish(alice, job)
    again = await alice.post("/api/posts", json={"job": job["id"], "title": "twice"})
    assert again.status_code == 409 and error_code(again) == "already_published"
    assert (await bob.patch(f"/api/posts/{post['id']}", json={"title": "hijack"})).status_code == 403
    assert (await bob.delete(f"/api/posts/{post['id']}")).status_code == 403
    assert (await bob.get("/api/posts?sort=random")).status_code == 400
    assert error_code(await bob.get("/api/posts?cursor=abc")) == "bad_cursor"
    assert (await bob.get("/api/posts?feed=following", xsrf=False)).status_code == 200
    assert (await bob.put("/api/users/bob/follow")).status_code == 400
    assert (await bob.put("/api/posts/999999/like")).status_code == 404
    anonymous = ApiClient(alice.base_url)
    try:
        assert (await anonymous.put(f"/api/posts/{post['id']}/like")).status_code == 401
        following = await anonymous.get("/api/posts?feed=following")
        assert following.status_code == 401 and error_code(following) == "sign_in_required"
    finally:
        await anonymous.aclose()
    edited = await alice.patch(f"/api/posts/{post['id']}", json={"title": "Lighthouse II", "tags": ["night"]})
    assert edited.json()["post"]["title"] == "Lighthouse II" and edited.json()["post"]["tags"] == ["night"]
    assert (await bob.get("/api/posts?tag=night")).json()["posts"][0]["title"] == "Lighthouse II"
    assert (await alice.delete(f"/api/posts/{post['id']}")).status_code == 204
    assert (await bob.get("/api/posts")).json()["posts"] == []


async def test_reports_and_moderation_hide_a_post_and_a_message_for_everyone_but_owner_and_moderators(gen_settings):
    async with running_server(gen_settings) as (base_url, runtime):
        alice, bob, mod = ApiClient(base_url), ApiClient(base_url), ApiClient(base_url)
        for client, name in ((alice, "alice"), (bob, "bob"), (mod, "mona")):
            await client.register(name)
        await runtime.users.set_moderator("mona", True)
        ws_bob = await WsClient.connect(base_url, api=bob)
        try:
            job = await finished_job(alice, public=True)  # a public job: readable by anyone until its post is hidden
            post = await publish(alice, job)
            room = post["room"]
            assert (await ws_bob.request("sub", topic=f"room:{room}"))["type"] == "ack"
            spam = (await ws_bob.request("chat.send", room=room, text="buy cheap pixels"))["message"]

            report = await bob.post("/api/reports", json={"kind": "post", "target": post["id"], "reason": "nsfw"})
            assert report.status_code == 201
            twice = await bob.post("/api/reports", json={"kind": "post", "target": post["id"], "reason": "spam"})
            assert twice.status_code == 200 and twice.json()["report"]["id"] == report.json()["report"]["id"]
            assert (await alice.post("/api/reports", json={"kind": "message", "target": spam["id"],
                                                          "reason": "spam"})).status_code == 201
            for body in ({"kind": "user", "target": 1, "reason": "spam"},
                         {"kind": "post", "target": post["id"], "reason": "boring"},
                         {"kind": "post", "target": post["id"], "reason": "spam", "details": "x" * 1001}):
                assert (await bob.post("/api/reports", json=body)).status_code == 400, body
            assert (await bob.post("/api/reports", json={"kind": "post", "target": 424242,
                                                        "reason": "spam"})).status_code == 404

            assert (await bob.get("/api/moderation/reports")).status_code == 403
            assert (await bob.post(f"/api/moderation/post/{post['id']}/hide")).status_code == 403
            queue = (await mod.get("/api/moderation/reports")).json()["items"]
            assert [(item["kind"], item["target"], item["count"]) for item in queue] == [
                ("message", str(spam["id"]), 1), ("post", str(post["id"]), 1)]
            assert queue[1]["subject"]["title"] == "Lighthouse" and queue[0]["subject"]["text"] == "buy cheap pixels"

            hidden = await mod.post(f"/api/moderation/message/{spam['id']}/hide")
            assert hidden.json()["reports_closed"] == 1
            assert (await ws_bob.wait_type("chat.deleted"))["message"]["id"] == spam["id"]
            assert (await alice.get(f"/api/rooms/{room}/messages")).json()["messages"] == []
            assert [m["hidden"] for m in (await bob.get(f"/api/rooms/{room}/messages")).json()["messages"]] == [True]

            assert (await mod.post(f"/api/moderation/post/{post['id']}/hide")).json()["reports_closed"] == 1
            assert (await bob.get("/api/posts")).json()["posts"] == []
            assert (await bob.get(f"/api/posts/{post['id']}")).status_code == 404
            assert (await bob.get(post["cover"]["url"])).status_code == 404
            # Hidden on every path: the public job behind it and its image files too.
            assert (await bob.get(f"/api/jobs/{job['id']}")).status_code == 404
            assert (await bob.get(job["images"][0]["thumb_url"])).status_code == 404
            assert (await ws_bob.request("sub", topic=f"job:{job['id']}"))["code"] == "forbidden"
            for insider in (alice, mod):
                assert (await insider.get(f"/api/jobs/{job['id']}")).status_code == 200
                assert (await insider.get(job["images"][0]["url"])).status_code == 200
            assert (await bob.get(f"/api/rooms/{room}/messages")).status_code == 404
            late = await WsClient.connect(base_url, api=bob)
            try:
                assert (await late.request("sub", topic=f"room:{room}"))["code"] == "not_found"
            finally:
                late.close()
            refused = await ws_bob.request("chat.send", room=room, text="still here?")
            assert refused["type"] == "error" and refused["code"] == "not_found"
            # Its owner and moderators still see it, marked hidden, on its page and the owner's profile.
            assert (await alice.get(f"/api/posts/{post['id']}")).json()["post"]["hidden"] is True
            assert (await mod.get(f"/api/posts/{post['id']}")).status_code == 200
            assert [p["id"] for p in (await alice.get("/api/posts?user=alice")).json()["posts"]] == [post["id"]]
            assert (await bob.get("/api/posts?user=alice")).json()["posts"] == []
            assert (await mod.get("/api/moderation/reports")).json()["items"] == []
            assert len((await mod.get("/api/moderation/reports?status=hidden")).json()["items"]) == 2

            await mod.post(f"/api/moderation/post/{post['id']}/restore")
            assert [p["id"] for p in (await bob.get("/api/posts")).json()["posts"]] == [post["id"]]
            assert (await bob.get(f"/api/jobs/{job['id']}")).status_code == 200
        finally:
            ws_bob.close()
            for client in (alice, bob, mod):
                await client.aclose()
