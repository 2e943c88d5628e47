"""Collaborative sessions over HTTP and the real WebSocket, on both backends."""

import asyncio
import random

import pytest
from pycrdt import Doc, Text
from sqlalchemy import func, select

from inference.demo_model import DEMO_MODEL_NAME
from server.collab import protocol
from server.collab.protocol import Kind
from server.store.collab_tables import CollabUpdate
from tests.conftest import make_settings
from tests.support.client import ApiClient, error_code
from tests.support.collab import Peer
from tests.support.server import running_server
from tests.support.ws import WsClient


@pytest.fixture
async def people(server):
    clients: list[ApiClient] = []
    peers: list[Peer] = []

    async def person(name: str) -> ApiClient:
        client = ApiClient(server)
        await client.register(name)
        clients.append(client)
        return client

    async def join(api: ApiClient, session_id: str, base: str | None = None) -> Peer:
        peer = await Peer.join(base or server, api, session_id)
        peers.append(peer)
        return peer

    person.join = join
    yield person
    for peer in peers:
        peer.close()
    for client in clients:
        await client.aclose()


async def new_session(owner: ApiClient, **body) -> str:
    response = await owner.post("/api/collab/sessions", {"title": "fox", **body})
    assert response.status_code == 201, response.text
    return response.json()["session"]["id"]


async def invite(owner: ApiClient, session_id: str, guest: ApiClient, role: str) -> None:
    response = await owner.post(f"/api/collab/sessions/{session_id}/invites", {"role": role})
    assert response.status_code == 201, response.text
    token = response.json()["invite"]["token"]
    accepted = await guest.post(f"/api/collab/invites/{token}/accept")
    assert accepted.status_code == 200 and accepted.json()["role"] == role, accepted.text


async def document(api: ApiClient, session_id: str) -> dict:
    response = await api.get(f"/api/collab/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()["document"]


async def test_sessions_members_roles_and_invites(people):
    alice, bob, carol, mallory = [await people(n) for n in ("alice", "bob", "carol", "mallory")]
    sid = await new_session(alice, prompt="a fox", settings={"steps": 4, "model": "m"})
    await invite(alice, sid, bob, "editor")
    await invite(alice, sid, carol, "viewer")
    seen = (await bob.get(f"/api/collab/sessions/{sid}")).json()
    assert seen["role"] == "editor" and seen["document"]["prompt"] == "a fox"
    assert seen["document"]["settings"]["steps"] == 4
    assert [(m["user"]["username"], m["role"]) for m in seen["members"]] == [
        ("alice", "owner"), ("bob", "editor"), ("carol", "viewer")]
    assert [s["id"] for s in (await carol.get("/api/collab/sessions")).json()["sessions"]] == [sid]
    # Outsiders do not learn the session exists; members below owner cannot manage it.
    assert (await mallory.get(f"/api/collab/sessions/{sid}")).status_code == 404
    assert error_code(await bob.post(f"/api/collab/sessions/{sid}/invites", {"role": "editor"})) == "forbidden"
    assert error_code(await alice.post(f"/api/collab/sessions/{sid}/invites", {"role": "owner"})) == "invalid_input"
    assert error_code(await carol.post(f"/api/collab/sessions/{sid}/renders")) == "forbidden"
    assert error_code(await bob.delete(f"/api/collab/sessions/{sid}/members/{1}")) == "forbidden"
    assert error_code(await alice.post("/api/collab/invites/not-a-real-token/accept")) == "not_found"
    assert error_code(await alice.post("/api/collab/sessions", {"prompt": 5})) == "invalid_input"
    # A viewer cannot even subscribe as an outsider would: mallory is refused the topic.
    ws = await WsClient.connect(mallory.base_url, api=mallory)
    assert (await ws.request("sub", topic=f"collab:{sid}"))["code"] == "forbidden"
    ws.close()
    closed = await alice.delete(f"/api/collab/sessions/{sid}")
    assert closed.status_code == 200 and closed.json()["session"]["closed"]
    assert error_code(await bob.post(f"/api/collab/sessions/{sid}/renders")) == "session_closed"


async def test_concurrent_edits_converge_and_a_late_joiner_gets_it_whole(people):
    alice, bob, carol = [await people(n) for n in ("alice", "bob", "carol")]
    sid = await new_session(alice, prompt="cat")
    await invite(alice, sid, bob, "editor")
    await invite(alice, sid, carol, "viewer")
    a, b = await people.join(alice, sid), await people.join(bob, sid)
    assert str(a.prompt) == str(b.prompt) == "cat"
    rng = random.Random(7)
    # Interleaved inserts and deletes, each sent before the other's arrives.
    for step in range(30):
        for peer, mark in ((a, "A"), (b, "b😀")):
            def change(p, mark=mark):
                if len(p.prompt) > 3 and rng.random() < 0.3:
                    del p.prompt[0:1]
                else:
                    p.prompt.insert(rng.choice([0, len(p.prompt)]), mark)
            await peer.edit(change)
        if step % 10 == 0:
            await asyncio.sleep(0.01)
    # Settle until both have each other's edits: on a loaded machine an update can trail by more than a quiet spell.
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        await a.settle()
        await b.settle()
        if str(a.prompt) == str(b.prompt) or asyncio.get_running_loop().time() > deadline:
            break
    assert str(a.prompt) == str(b.prompt)
    assert "A" in str(a.prompt) and "b😀" in str(a.prompt)
    assert (await document(alice, sid))["prompt"] == str(a.prompt)
    late = await people.join(carol, sid)
    assert str(late.prompt) == str(a.prompt)
    assert not a.errors and not b.errors


async def test_the_document_survives_a_restart(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data")
    async with running_server(settings) as (base, _runtime):
        alice = ApiClient(base)
        await alice.register("alice")
        sid = await new_session(alice, prompt="")
        peer = await Peer.join(base, alice, sid)
        for word in ("misty ", "harbour ", "at dawn"):
            await peer.edit(lambda p, w=word: p.prompt.insert(len(p.prompt), w))
        await peer.edit(lambda p: p.settings.__setitem__("seed", 42), confirm=True)  # acked once stored
        peer.close()
        await alice.aclose()
    async with running_server(settings) as (base, _runtime):
        alice = ApiClient(base)
        assert (await alice.login("alice")).status_code == 200
        peer = await Peer.join(base, alice, sid)
        assert str(peer.prompt) == "misty harbour at dawn" and peer.settings["seed"] == 42
        peer.close()
        await alice.aclose()


async def test_bad_input_is_refused_and_nobody_else_is_affected(people, server):
    alice, bob, carol = [await people(n) for n in ("alice", "bob", "carol")]
    sid = await new_session(alice, prompt="calm sea")
    other = await new_session(alice, prompt="elsewhere")
    await invite(alice, sid, bob, "editor")
    await invite(alice, sid, carol, "viewer")
    a, b, c = await people.join(alice, sid), await people.join(bob, sid), await people.join(carol, sid)

    async def refused(peer, data, code, session=None):
        reply = await peer.ws.request("collab.update", session=session or sid, data=data)
        assert reply["type"] == "error" and reply["code"] == code, reply

    # Random bytes, a truncated message, trailing junk, a bad awareness state.
    await refused(b, bytes(random.Random(1).getrandbits(8) for _ in range(64)), "bad_update")
    await refused(b, protocol.encode(Kind.UPDATE, b"\xff" * 40), "bad_update")
    await refused(b, protocol.encode(Kind.UPDATE, b"\x00\x00") + b"x", "bad_update")
    await refused(b, protocol.encode(Kind.AWARENESS, b"\x01\x05\x01\x03[1]"), "bad_update")
    await refused(b, "text, not bytes", "bad_frame")
    # An awareness state too big to fan out, and one that speaks for another member's client id.
    huge = b'{"name":"' + b"x" * 3000 + b'"}'
    await refused(b, protocol.encode(Kind.AWARENESS, protocol.encode_awareness(
        [protocol.AwarenessEntry(77, 1, huge)])), "bad_update")
    alice_state = protocol.AwarenessEntry(4242, 1, b'{"user":{"name":"alice"}}')
    assert (await a.ws.request("collab.update", session=sid, data=protocol.encode(
        Kind.AWARENESS, protocol.encode_awareness([alice_state]))))["type"] == "ack"
    await refused(b, protocol.encode(Kind.AWARENESS, protocol.encode_awareness(
        [protocol.AwarenessEntry(4242, 2, b'{"user":{"name":"not alice"}}')])), "not_your_client")
    # Colours and names other editors put into the page: only #rrggbb and plain text.
    for user in (b'{"color":"red;background:url(https://evil.example/x)"}', b'{"colorLight":"#12345"}',
                 b'{"name":"x\\u202eevil"}', b'{"name":"a","onclick":"x"}', b'"alice"'):
        await refused(b, protocol.encode(Kind.AWARENESS, protocol.encode_awareness(
            [protocol.AwarenessEntry(78, 1, b'{"user":' + user + b'}')])), "bad_update")
    plain = b'{"user":{"id":2,"name":"Bob","color":"#1a2b3c","colorLight":"#1a2b3c38"}}'
    assert (await b.ws.request("collab.update", session=sid, data=protocol.encode(
        Kind.AWARENESS, protocol.encode_awareness([protocol.AwarenessEntry(79, 1, plain)]))))["type"] == "ack"
    # An update for a session the socket has not joined (even one the user owns).
    await refused(a, protocol.encode(Kind.UPDATE, b"\x00\x00"), "not_subscribed", session=other)
    # Oversized: refused with an error frame, under the 64 KiB frame limit that would close the socket.
    await refused(b, protocol.encode(Kind.UPDATE, b"\x00" * 40_000), "update_too_large")
    # A viewer's edit.
    scratch = Doc()
    scratch.apply_update(c.doc.get_update())
    before = scratch.get_state()
    scratch.get("prompt", type=Text).insert(0, "VIEWER ")
    await refused(c, protocol.encode(Kind.UPDATE, scratch.get_update(before)), "forbidden")
    await a.settle(0.2)
    assert str(a.prompt) == "calm sea"
    assert (await document(alice, sid))["prompt"] == "calm sea"
    # A removed member: the socket is told and cut off, and a further edit is refused.
    response = await alice.delete(f"/api/collab/sessions/{sid}/members/{(await bob.get('/api/me')).json()['user']['id']}")
    assert response.status_code == 204
    await b.ws.wait_type("collab.removed", session=sid)
    await refused(b, protocol.encode(Kind.UPDATE, b.doc.get_update()), "not_subscribed")
    assert (await b.ws.request("sub", topic=f"collab:{sid}"))["code"] == "forbidden"
    # The others still edit and see each other.
    await a.edit(lambda p: p.prompt.insert(len(p.prompt), " at night"))
    await c.wait_text("calm sea at night")
    assert not c.errors or all(e["code"] == "forbidden" for e in c.errors)


async def test_a_flood_of_updates_is_rate_limited(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", collab_update_limit=20, collab_update_window_secs=1)
    async with running_server(settings) as (base, _runtime):
        alice, bob = ApiClient(base), ApiClient(base)
        await alice.register("alice")
        await bob.register("bob")
        sid = await new_session(alice, prompt="")
        await invite(alice, sid, bob, "editor")
        a, b = await Peer.join(base, alice, sid), await Peer.join(base, bob, sid)
        for i in range(40):
            await b.edit(lambda p, i=i: p.prompt.insert(len(p.prompt), "x"))
        limited = await b.ws.wait_type("error", code="rate_limited", timeout=5)
        assert limited["data"]["retry_after"] >= 1
        # The flooder's accepted edits arrived; alice is unaffected and still edits.
        await a.settle(0.3)
        await a.edit(lambda p: p.prompt.insert(0, "A"))
        await a.settle(0.3)
        assert str(a.prompt).startswith("A") and 0 < str(a.prompt).count("x") < 40
        assert (await document(alice, sid))["prompt"] == str(a.prompt)
        # After the wait, syncing again (as the browser does) sends what was refused: nothing is lost.
        await asyncio.sleep(limited["data"]["retry_after"] + 0.1)
        await b.sync()
        await a.wait_text("A" + "x" * 40)
        assert (await document(alice, sid))["prompt"] == "A" + "x" * 40
        for peer in (a, b):
            peer.close()
        await alice.aclose()
        await bob.aclose()


async def test_compaction_keeps_the_document_and_shrinks_the_store(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", collab_compact_rows=25)
    async with running_server(settings) as (base, runtime):
        alice = ApiClient(base)
        await alice.register("alice")
        sid = await new_session(alice, prompt="")
        a = await Peer.join(base, alice, sid)
        # Each edit waits for its ack, so all are stored before the counts below (storing is in the background).
        for i in range(60):
            await a.edit(lambda p: p.prompt.insert(len(p.prompt), "ab"), confirm=True)
            if i % 3 == 2:
                await a.edit(lambda p: p.prompt.__delitem__(slice(len(p.prompt) - 1, len(p.prompt))), confirm=True)
        async with runtime.db() as db:
            rows = await db.scalar(select(func.count()).select_from(CollabUpdate).where(CollabUpdate.session_id == sid))
        assert rows < 40, rows  # 81 updates went in
        after = await runtime.collab.compact(sid)
        assert after.rows == 1
        bob = ApiClient(base)
        await bob.register("bob")
        await invite(alice, sid, bob, "viewer")
        b = await Peer.join(base, bob, sid)
        assert str(b.prompt) == str(a.prompt) and len(str(a.prompt)) == 100
        a.close()
        b.close()
        await alice.aclose()
        await bob.aclose()


async def test_two_processes_converge_through_redis(backend, settings):
    if not backend.services:
        pytest.skip("two web processes need MariaDB + Redis")
    async with running_server(settings) as (web1, _rt1), running_server(settings) as (web2, _rt2):
        alice, bob = ApiClient(web1), ApiClient(web2)
        await alice.register("alice")
        await bob.register("bob")
        sid = await new_session(alice, prompt="one")
        await invite(alice, sid, bob, "editor")
        a, b = await Peer.join(web1, alice, sid), await Peer.join(web2, bob, sid)
        for i in range(20):
            await a.edit(lambda p, i=i: p.prompt.insert(0, f"a{i} "))
            await b.edit(lambda p, i=i: p.prompt.insert(len(p.prompt), f" b{i}"))
        await a.settle()
        await b.settle()
        assert str(a.prompt) == str(b.prompt) and "a19" in str(a.prompt) and "b19" in str(b.prompt)
        # Each process's copy converged too: a late joiner on either gets the same text.
        carol = ApiClient(web2)
        await carol.register("carol")
        await invite(alice, sid, carol, "viewer")
        c = await Peer.join(web2, carol, sid)
        assert str(c.prompt) == str(a.prompt)
        assert (await document(alice, sid))["prompt"] == str(a.prompt)
        for peer in (a, b, c):
            peer.close()
        for client in (alice, bob, carol):
            await client.aclose()


async def test_render_every_member_watches_and_a_render_is_restored(gen_server):
    alice, bob = ApiClient(gen_server), ApiClient(gen_server)
    try:
        await alice.register("alice")
        await bob.register("bob")
        sid = await new_session(alice, prompt="a lighthouse", settings={
            "model": DEMO_MODEL_NAME, "steps": 3, "width": 64, "height": 64, "sampler": "Euler", "seed": 7})
        await invite(alice, sid, bob, "viewer")
        a, b = await Peer.join(gen_server, alice, sid), await Peer.join(gen_server, bob, sid)
        response = await alice.post(f"/api/collab/sessions/{sid}/renders")
        assert response.status_code == 202, response.text
        render = response.json()["render"]
        assert render["snapshot"]["prompt"] == "a lighthouse"
        announced = await b.ws.wait_type("collab.render", timeout=10)
        assert announced["render"]["job"] == render["job"]
        # The viewer is not the job's owner, yet may watch it as a member of the session.
        job_topic = f"job:{render['job']}"
        assert (await b.ws.request("sub", topic=job_topic, since=0))["type"] == "ack"
        preview = await b.ws.wait_type("gen.preview", timeout=60)
        done = await b.ws.wait_type("gen.done", timeout=60)
        assert preview["image"] and done["images"]
        image = await bob.get(done["images"][0]["url"])
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        # The strip lists it; editing then restoring brings the prompt back for everyone.
        await a.edit(lambda p: (p.prompt.__delitem__(slice(0, len(p.prompt))), p.prompt.insert(0, "a castle")))
        await b.wait_text("a castle")
        strip = (await bob.get(f"/api/collab/sessions/{sid}")).json()["renders"]
        assert [r["id"] for r in strip] == [render["id"]]
        assert error_code(await bob.post(f"/api/collab/sessions/{sid}/renders/{render['id']}/restore")) == "forbidden"
        restored = await alice.post(f"/api/collab/sessions/{sid}/renders/{render['id']}/restore")
        assert restored.status_code == 200 and restored.json()["document"]["prompt"] == "a lighthouse"
        await b.wait_text("a lighthouse")
        await a.wait_text("a lighthouse")
        # Outsiders still may not watch the job.
        mallory = ApiClient(gen_server)
        await mallory.register("mallory")
        ws = await WsClient.connect(gen_server, api=mallory)
        assert (await ws.request("sub", topic=job_topic))["code"] == "forbidden"
        ws.close()
        await mallory.aclose()
        a.close()
        b.close()
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_a_document_past_its_size_limit_refuses_more_edits(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", collab_max_document_bytes=4096,
                             collab_update_limit=1000)
    async with running_server(settings) as (base, _runtime):
        alice = ApiClient(base)
        await alice.register("alice")
        sid = await new_session(alice, prompt="")
        a = await Peer.join(base, alice, sid)
        for _ in range(20):
            await a.edit(lambda p: p.prompt.insert(len(p.prompt), "y" * 300))
        refused = await a.ws.wait_type("error", code="document_too_large")
        assert "KiB" in refused["message"]
        stored = (await document(alice, sid))["prompt"]
        assert 0 < len(stored) < 20 * 300 and set(stored) == {"y"}
        a.close()
        await alice.aclose()
