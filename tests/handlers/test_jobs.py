"""Live generation end to end on the tiny model: HTTP, WebSocket, the fair queue, restarts."""

import asyncio
import base64
import io
import json

from PIL import Image

from tests.support.client import ApiClient, error_code
from tests.support.server import running_server
from tests.support.ws import WsClient

MODEL = "demo-tiny"
SMALL = {"model": MODEL, "prompt": "a red fox in the snow", "width": 64, "height": 64, "sampler": "Euler"}


async def job_events(ws: WsClient, job_id: str, until=("gen.done", "gen.error", "gen.cancelled"), timeout=60):
    events = []
    while True:
        event = await ws.wait_for(lambda e: e.get("job") == job_id, timeout)
        events.append(event)
        if event["type"] in until:
            return events


async def test_submit_watch_every_step_and_download(gen_server, users):
    alice = await users("alice")
    ws = await WsClient.connect(gen_server, api=alice)
    ack = await ws.request("gen.submit", timeout=30, **SMALL, steps=4, seed=42)
    assert ack["type"] == "ack", ack
    job = ack["job"]
    assert job["status"] == "queued" and job["seed"] == 42
    events = await job_events(ws, job["id"])
    kinds = [e["type"] for e in events]
    # It waits first (place 1: nothing else queued), unless a worker with MariaDB + Redis took it before
    # the places were announced; either way it starts exactly once and ends done.
    waited = kinds[:kinds.index("gen.started")]
    assert set(waited) <= {"gen.queued"} and all(e["place"] == 1 for e in events[:len(waited)]), events
    assert kinds.count("gen.started") == 1 and kinds[-1] == "gen.done"
    progress = [e for e in events if e["type"] == "gen.progress"]
    previews = [e for e in events if e["type"] == "gen.preview"]
    assert [e["step"] for e in progress] == [1, 2, 3, 4] and progress[-1]["total"] == 4
    assert all("eta" in e and "elapsed" in e for e in progress)
    assert [e["step"] for e in previews] == [1, 2, 3, 4]
    assert all(isinstance(e["image"], bytes) and e["mime"].startswith("image/") for e in previews)
    assert len({e["image"] for e in previews}) == 4, "every preview should differ"
    assert [e["seq"] for e in events if "seq" in e] == sorted(e["seq"] for e in events if "seq" in e)
    done = events[-1]
    [image] = done["images"]
    png = await alice.get(image["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    decoded = Image.open(io.BytesIO(png.content))
    assert decoded.size == (64, 64) and "Seed: 42" in decoded.text["parameters"]
    thumb = await alice.get(image["thumb_url"])
    assert thumb.headers["content-type"] == "image/webp"
    record = (await alice.get(f"/api/jobs/{job['id']}")).json()["job"]
    assert record["status"] == "done" and record["images"][0]["id"] == image["id"]
    mine = (await alice.get("/api/jobs?mine=1")).json()["jobs"]
    assert [j["id"] for j in mine] == [job["id"]]
    ws.close()


async def test_same_seed_same_bytes_over_http(gen_server, users):
    alice = await users("alice")
    ws = await WsClient.connect(gen_server, api=alice)
    hashes = []
    for _ in range(2):
        response = await alice.post("/api/jobs", {**SMALL, "steps": 3, "seed": 7})
        assert response.status_code == 202, response.text
        job_id = response.json()["job"]["id"]
        await ws.request("sub", topic=f"job:{job_id}", since=0)
        done = (await job_events(ws, job_id))[-1]
        assert done["type"] == "gen.done", done
        hashes.append((await alice.get(done["images"][0]["url"])).content)
    assert hashes[0] == hashes[1]
    ws.close()


async def test_cancel_mid_run_stops_within_a_step(gen_server, users):
    alice = await users("alice")
    ws = await WsClient.connect(gen_server, api=alice)
    job = (await ws.request("gen.submit", timeout=30, **SMALL, steps=150))["job"]
    progress = await ws.wait_for(lambda e: e.get("type") == "gen.progress" and e.get("step", 0) >= 2, 60)
    ack = await ws.request("gen.cancel", job=job["id"])
    assert ack["type"] == "ack"
    cancelled = await ws.wait_type("gen.cancelled", 30)
    later = [e["step"] for e in ws.events if e.get("type") == "gen.progress"]
    assert cancelled["step"] < 150 and all(step <= progress["step"] + 3 for step in later)
    record = (await alice.get(f"/api/jobs/{job['id']}")).json()["job"]
    assert record["status"] == "cancelled" and not record["images"], record
    ws.close()


async def test_two_users_interleave_fairly(gen_server, users):
    alice, bob = await users("alice"), await users("bob")
    ws = await WsClient.connect(gen_server, api=alice)
    ws_b = await WsClient.connect(gen_server, api=bob)
    # Alice's first job is long (and larger), so everything else waits while it runs.
    first = (await ws.request("gen.submit", timeout=30, **{**SMALL, "width": 128, "height": 128}, steps=150))["job"]
    await ws.wait_for(lambda e: e.get("job") == first["id"] and e["type"] == "gen.progress", 30)
    a_jobs = [first["id"]] + [(await ws.request("gen.submit", timeout=30, **SMALL, steps=3))["job"]["id"]
                              for _ in range(3)]
    b_jobs = [(await ws_b.request("gen.submit", timeout=30, **SMALL, steps=3))["job"]["id"] for _ in range(2)]
    assert (await alice.get(f"/api/jobs/{first['id']}")).json()["job"]["status"] == "running", "first job too short"
    for job_id in a_jobs:
        await job_events(ws, job_id)
    for job_id in b_jobs:
        await job_events(ws_b, job_id)
    started = {}
    for client, ids in ((alice, a_jobs), (bob, b_jobs)):
        for job_id in ids:
            started[job_id] = (await client.get(f"/api/jobs/{job_id}")).json()["job"]["started_at"]
    order = sorted(started, key=started.get)
    owners = ["a" if j in a_jobs else "b" for j in order]
    # Alice's long job was running; then the user served longest ago goes next.
    assert owners == ["a", "b", "a", "b", "a", "a"], owners
    ws.close()
    ws_b.close()


async def test_queue_places_are_pushed_as_they_change(gen_server, users):
    alice, bob = await users("alice"), await users("bob")
    ws_a = await WsClient.connect(gen_server, api=alice)
    ws_b = await WsClient.connect(gen_server, api=bob)
    first = (await ws_a.request("gen.submit", timeout=30, **SMALL, steps=20))["job"]["id"]
    second = (await ws_a.request("gen.submit", timeout=30, **SMALL, steps=2))["job"]["id"]
    bobs = (await ws_b.request("gen.submit", timeout=30, **SMALL, steps=2))["job"]["id"]
    places = [e["place"] for e in await job_events(ws_b, bobs, until=("gen.started",)) if e["type"] == "gen.queued"]
    assert places[0] >= 1 and places[-1] == 1 and places == sorted(places, reverse=True)
    for job_id in (first, second):
        await job_events(ws_a, job_id)
    ws_a.close()
    ws_b.close()


async def test_bad_requests_are_refused_before_the_engine(gen_server, users):
    alice = await users("alice")
    bomb = io.BytesIO()
    Image.new("1", (30000, 30000)).save(bomb, format="PNG")
    cases = [
        ({"model": "no-such-model"}, "unknown_model"),
        ({"steps": 0}, None), ({"steps": 10000}, None),
        ({"width": 7, "height": 7}, None), ({"width": 100000, "height": 100000}, None),
        ({"prompt": "x" * 50000}, None),
        ({"sampler": "Telepathy"}, None),
        ({"kind": "img2img", "init_image": base64.b64encode(b"not an image").decode()}, None),
        ({"kind": "img2img", "init_image": base64.b64encode(bomb.getvalue()).decode()}, None),
        ({"kind": "img2img", "init_image": "%%%not base64"}, "invalid_image"),
        ({"steps": "many"}, None),
        ({"colour": "red"}, "invalid_input"),
    ]
    for change, code in cases:
        response = await alice.post("/api/jobs", {**SMALL, **change})
        assert response.status_code == 400, (change, response.text)
        if code:
            assert error_code(response) == code, (change, response.text)
    nan = await alice.post("/api/jobs", content=json.dumps({**SMALL, "guidance": float("nan")}).encode(),
                           headers={"Content-Type": "application/json"})
    assert nan.status_code == 400 and "guidance" in nan.json()["error"]["message"]
    assert (await alice.get("/api/jobs")).json()["jobs"] == []  # nothing was queued


async def test_others_cannot_cancel_or_watch_private_jobs(gen_server, users):
    alice, mallory = await users("alice"), await users("mallory")
    job_id = (await alice.post("/api/jobs", {**SMALL, "steps": 2})).json()["job"]["id"]
    assert (await mallory.delete(f"/api/jobs/{job_id}")).status_code == 403
    assert (await mallory.get(f"/api/jobs/{job_id}")).status_code == 404
    ws = await WsClient.connect(gen_server, api=mallory)
    assert (await ws.request("sub", topic=f"job:{job_id}"))["code"] == "forbidden"
    assert (await ws.request("gen.cancel", job=job_id))["code"] == "forbidden"
    assert (await ws.request("gen.cancel", job="0" * 32))["code"] == "not_found"
    assert (await ws.request("gen.submit", model=MODEL))["code"] == "invalid_input"
    assert (await ws.request("gen.submit", **SMALL, steps=[1]))["type"] == "error"
    anonymous = await WsClient.connect(gen_server)
    assert (await anonymous.request("gen.submit", **SMALL))["code"] == "unauthenticated"
    assert (await alice.get("/api/jobs/" + "f" * 32)).status_code == 404
    ws.close()
    anonymous.close()


async def test_queue_caps_refuse_clearly(gen_settings):
    settings = gen_settings.model_copy(update={"queue_max_global": 3, "queue_max_per_user": 2})
    async with running_server(settings) as (base, runtime):
        clients = []
        for name in ("user1", "user2", "user3"):
            client = ApiClient(base)
            await client.register(name)
            clients.append(client)
        statuses = []
        for client in clients:
            for _ in range(3):
                response = await client.post("/api/jobs", {**SMALL, "steps": 150})  # long: only one runs
                statuses.append((response.status_code, error_code(response) if response.status_code != 202 else ""))
        refused = [s for s in statuses if s[0] == 429]
        assert all(code == "queue_full" for _, code in refused) and refused
        assert sum(1 for s in statuses if s[0] == 202) <= 1 + 3, statuses  # one running, at most three waiting
        for client in clients:
            for job in (await client.get("/api/jobs?mine=1")).json()["jobs"]:
                if job["status"] in ("queued", "running"):
                    await client.delete(f"/api/jobs/{job['id']}")
            await client.aclose()


async def test_a_restart_loses_no_job(gen_settings):
    # No grace: the running job is handed back at once, and runs again (from step 0) after the restart.
    async with running_server(gen_settings.model_copy(update={"worker_stop_grace_secs": 0})) as (base, runtime):
        alice = ApiClient(base)
        await alice.register("alice")
        token = (await alice.post("/api/tokens", {"name": "t"})).json()["token"]
        ws = await WsClient.connect(base, api=alice)
        ids = [(await alice.post("/api/jobs", {**SMALL, "steps": 150 if i == 0 else 3})).json()["job"]["id"]
               for i in range(3)]
        await ws.request("sub", topic=f"job:{ids[0]}", since=0)
        await ws.wait_for(lambda e: e.get("job") == ids[0] and e["type"] == "gen.progress", 30)
        await alice.aclose()
    requeued = await ws.wait_for(lambda e: e.get("type") == "gen.requeued", 10)
    assert requeued["job"] == ids[0] and requeued["reason"] == "worker_stopped"
    assert await ws.closed() == 1001  # going away
    async with running_server(gen_settings) as (base, runtime):
        script = ApiClient(base, token=token)
        for job_id in ids:
            for _ in range(600):
                job = (await script.get(f"/api/jobs/{job_id}")).json()["job"]
                if job["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
            assert job["status"] == "done" and job["images"], job
        first = (await script.get(f"/api/jobs/{ids[0]}")).json()["job"]
        assert first["attempts"] == 1, "a job handed back on a graceful stop does not count as a failed attempt"
        await script.aclose()


async def test_a_burst_cannot_overrun_the_global_cap(gen_settings):
    settings = gen_settings.model_copy(update={"queue_max_global": 4, "queue_max_per_user": 10})
    async with running_server(settings) as (base, runtime):
        alice = ApiClient(base)
        await alice.register("alice")
        responses = await asyncio.gather(*(alice.post("/api/jobs", {**SMALL, "steps": 40}) for _ in range(12)))
        admitted = [r for r in responses if r.status_code == 202]
        assert 4 <= len(admitted) <= 5  # four waiting, at most one already running
        assert all(error_code(r) == "queue_full" for r in responses if r.status_code != 202)
        for response in admitted:
            await alice.delete(f"/api/jobs/{response.json()['job']['id']}")
        await alice.aclose()
