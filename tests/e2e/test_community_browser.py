"""The community in Chromium: publish from Generate, the gallery, an artwork's live likes and room,
notifications live on the bell, Remix, NSFW blur; and a moderator hiding a post from the queue."""

from __future__ import annotations

import secrets

import pytest

from tests.support.client import ApiClient
from tests.support.jobs import finished_job

pytestmark = pytest.mark.browser

SCROLL_JOBS = 4  # of 8 images each, one post per image: more than one gallery page (24)


async def test_publish_gallery_like_room_notifications_remix_and_nsfw(demo_server, run_e2e):
    base_url, _runtime = demo_server
    output = await run_e2e("community.e2e.mjs", base_url)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output


async def test_moderator_hides_a_reported_post_from_the_queue(demo_server, run_e2e):
    base_url, runtime = demo_server
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


async def test_gallery_loads_the_next_page_as_it_scrolls(demo_server, run_e2e):
    base_url, _runtime = demo_server
    client = ApiClient(base_url)
    published = 0
    try:
        await client.register(f"painter_{secrets.token_hex(4)}")
        for n in range(SCROLL_JOBS):
            job = await finished_job(client, batch=8, seed=1000 * n)
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
