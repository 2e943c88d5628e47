"""Live: public renders listed and watched at a modest frame rate per tile; private ones never shown."""

from __future__ import annotations

import asyncio

from tests.support.ws import WsClient

LIVE_FPS = 2.0  # the default `live_tile_fps`
JOB = {"model": "demo-tiny", "prompt": "a lighthouse at dusk", "width": 64, "height": 64}


async def _wait_status(client, job_id: str, status: str, timeout: float = 60) -> dict:
    for _ in range(int(timeout / 0.05)):
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        if job["status"] == status:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never became {status}")


async def test_live_lists_public_renders_and_thins_their_previews(users, gen_server):
    ana = await users("ana")
    watcher = await WsClient.connect(gen_server)  # anyone: not signed in
    try:
        assert (await watcher.request("sub", topic="live:all"))["type"] == "ack"
        private = (await ana.post("/api/jobs", json={**JOB, "steps": 2})).json()["job"]
        await _wait_status(ana, private["id"], "done")
        # Long enough (80 steps at 192²) to outlast the feed's once-a-second look for new renders on a fast machine.
        public = (await ana.post("/api/jobs", json={**JOB, "steps": 80, "width": 192, "height": 192,
                                                    "public": True})).json()["job"]
        await _wait_status(ana, public["id"], "running")
        listed = (await ana.get("/api/live")).json()
        running = [card for card in listed["running"] if card["id"] == public["id"]]
        assert running and running[0]["owner"]["username"] == "ana" and running[0]["prompt"] == JOB["prompt"]
        assert running[0]["model"] == "demo-tiny"

        first = await watcher.wait_type("live.preview", timeout=60, job=public["id"])  # the job must start first
        started = asyncio.get_running_loop().time()
        assert first["image"] and first["mime"] and first["total"] == 80
        await watcher.wait_type("live.ended", timeout=60, job=public["id"])
        elapsed = asyncio.get_running_loop().time() - started
        frames = [e for e in watcher.events if e.get("type") == "live.preview" and e.get("job") == public["id"]]
        # The renderer sent every step's preview (no cap in tests); the feed sent at most LIVE_FPS a second.
        assert len(frames) <= elapsed * LIVE_FPS + 2, (len(frames), elapsed)
        steps = [frame["step"] for frame in frames]
        assert steps == sorted(steps)
        assert not [e for e in watcher.events if e.get("job") == private["id"]], "a private job is never shown"

        listed = (await ana.get("/api/live")).json()
        assert public["id"] not in [card["id"] for card in listed["running"]]
        recent = [card for card in listed["recent"] if card["id"] == public["id"]]
        assert recent and recent[0]["image"]
        assert private["id"] not in [card["id"] for card in listed["recent"]]
        assert listed["queued"] == 0
    finally:
        watcher.close()


async def test_live_topic_is_only_live_all(gen_server):
    ws = await WsClient.connect(gen_server)
    try:
        refused = await ws.request("sub", topic="live:other")
        assert refused["type"] == "error" and refused["code"] == "forbidden"
    finally:
        ws.close()
