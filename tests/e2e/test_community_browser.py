"""The community in Chromium: publish from Generate, the gallery, an artwork's live likes and room,
notifications live on the bell, Remix, NSFW blur; and a moderator hiding a post from the queue."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import AsyncIterator

import pytest

from inference.demo_model import DEMO_MODEL_NAME, build_demo_model
from tests.conftest import make_settings
from tests.e2e.conftest import CHROMIUM, ROOT
from tests.support.client import ApiClient
from tests.support.server import running_server

pytestmark = pytest.mark.browser

SCROLL_JOBS = 4  # of 8 images each, one post per image: more than one gallery page (24)
JOB_POLL_SECS = 0.1
JOB_TIMEOUT_SECS = 60


@pytest.fixture
async def community_server(embedded_backend, tmp_path) -> AsyncIterator[tuple[str, object]]:
    """A server with `demo-tiny` in its data dir (the pages generate 64×64 images in a few steps)."""
    if not (ROOT / "frontend" / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is not built: run `make test` (it runs `npm run build`)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    data = tmp_path / "data"
    await asyncio.to_thread(build_demo_model, data / "models" / DEMO_MODEL_NAME)
    async with running_server(make_settings(embedded_backend, data)) as (base_url, runtime):
        yield base_url, runtime


async def test_publish_gallery_like_room_notifications_remix_and_nsfw(community_server, run_e2e):
    base_url, _runtime = community_server
    output = await run_e2e("community.e2e.mjs", base_url)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output


async def test_moderator_hides_a_reported_post_from_the_queue(community_server, run_e2e):
    base_url, runtime = community_server
    name, password = f"mod_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    client = ApiClient(base_url)
    try:
        await client.register(name, password)
    finally:
        await client.aclose()
    await runtime.users.set_moderator(name, True)
    output = await run_e2e("moderation.e2e.mjs", base_url, VA_MOD_USER=name, VA_MOD_PASSWORD=password)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output


async def _finished_job(client: ApiClient, **fields) -> dict:
    response = await client.post("/api/jobs", json={"model": DEMO_MODEL_NAME, "prompt": "a tile", "width": 64,
                                                    "height": 64, "steps": 1, **fields})
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    for _ in range(int(JOB_TIMEOUT_SECS / JOB_POLL_SECS)):
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "done", job
            return job
        await asyncio.sleep(JOB_POLL_SECS)
    raise AssertionError(f"job {job_id} did not finish")


async def test_gallery_loads_the_next_page_as_it_scrolls(community_server, run_e2e):
    base_url, _runtime = community_server
    client = ApiClient(base_url)
    published = 0
    try:
        await client.register(f"painter_{secrets.token_hex(4)}")
        for n in range(SCROLL_JOBS):
            job = await _finished_job(client, batch=8, seed=1000 * n)
            for image in job["images"]:
                published += 1
                response = await client.post("/api/posts", json={"job": job["id"], "images": [image["id"]],
                                                                 "title": f"Tile {published}", "tags": ["tile"]})
                assert response.status_code == 201, response.text
    finally:
        await client.aclose()
    output = await run_e2e("gallery-scroll.e2e.mjs", base_url, VA_SCROLL_POSTS=str(published))
    print(output)
    assert output.rstrip().lower().endswith("pass"), output
