"""Art studio end to end on a real server, both backends: four styles as separate events, the cache, refusals."""

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.conftest import make_settings
from tests.support.client import error_code
from tests.support.photos import encode, photo
from tests.support.ws import WsClient

STYLES = {"pencil", "colour_pencil", "oil", "watercolour"}


@pytest.fixture
def settings(backend, tmp_path):
    # A small working size keeps the filters quick on two cores; the scaling itself is under test.
    return make_settings(backend, tmp_path / "data", art_max_side_px=128)


async def signed_in(new_client, name="alice"):
    client = new_client()
    await client.register(name)
    return client


async def post_photo(client, data: bytes, preset: str | None = None, content_type="image/png"):
    path = "/api/art" + (f"?preset={preset}" if preset else "")
    return await client.post(path, content=data, headers={"Content-Type": content_type})


async def art_events(ws: WsClient, job_id: str, timeout=30.0):
    events = []
    while True:
        event = await ws.wait_for(lambda e: e.get("job") == job_id, timeout)
        events.append(event)
        if event["type"] in ("gen.done", "gen.error"):
            return events


async def run_art(client, ws, data, preset=None):
    response = await post_photo(client, data, preset)
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    await ws.request("sub", topic=f"job:{job['id']}", since=0)
    return job, await art_events(ws, job["id"])


async def test_four_styles_arrive_as_separate_events_then_done(server, new_client):
    alice = await signed_in(new_client)
    ws = await WsClient.connect(server, api=alice)
    job, events = await run_art(alice, ws, encode(photo(200, 150), "JPEG", quality=90))
    assert job["kind"] == "art" and job["model"] == "opencv" and job["preset"] == "fast"
    assert (job["width"], job["height"]) == (128, 96) and job["status"] == "queued"
    kinds = [e["type"] for e in events]
    # One lifecycle for every kind: it may wait (gen.queued), then starts, shows each style, is done.
    assert set(kinds[:kinds.index("gen.started")]) <= {"gen.queued"} and kinds[-1] == "gen.done"
    results = [e for e in events if e["type"] == "art.result"]
    assert {e["style"] for e in results} == STYLES and len(results) == 4
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "each result is its own sequenced event"
    source = photo(200, 150).resize((128, 96))
    for event in results:
        image = event["image"]
        assert (image["width"], image["height"]) == (128, 96) and event["cached"] is False
        png = await alice.get(image["url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        decoded = Image.open(io.BytesIO(png.content)).convert("RGB")
        assert decoded.size == (128, 96) and decoded.tobytes() != source.tobytes()
        assert (await alice.get(image["thumb_url"])).headers["content-type"] == "image/webp"
    done = events[-1]
    assert done["cached"] is False
    assert [i["style"] for i in done["images"]] == ["pencil", "colour_pencil", "oil", "watercolour"]
    assert {i["id"] for i in done["images"]} == {e["image"]["id"] for e in results}
    record = (await alice.get(f"/api/jobs/{job['id']}")).json()["job"]
    assert record["status"] == "done" and len(record["images"]) == 4 and record["step"] == record["total"] == 4
    # A reloaded page lays the styles out from the stored job alone.
    assert {i["id"]: i["style"] for i in record["images"]} == {e["image"]["id"]: e["style"] for e in results}
    ws.close()


async def test_reencoded_photo_hits_the_cache_and_another_photo_misses(server, new_client):
    alice = await signed_in(new_client)
    ws = await WsClient.connect(server, api=alice)
    first, first_events = await run_art(alice, ws, encode(photo(240, 180), "PNG"))
    again, events = await run_art(alice, ws, encode(photo(240, 180), "JPEG", quality=60))
    assert first_events[-1]["cached"] is False and events[-1]["cached"] is True
    results = [e for e in events if e["type"] == "art.result"]
    assert len(results) == 4 and all(e["cached"] for e in results) and events[-1]["cached"] is True
    # The same stored files, as images of the new job.
    first_done, again_done = first_events[-1]["images"], events[-1]["images"]
    for a, b in zip(first_done, again_done):
        assert a["id"] != b["id"]
        assert (await alice.get(a["url"])).content == (await alice.get(b["url"])).content
    other, other_events = await run_art(alice, ws, encode(photo(240, 180, variant=7), "PNG"))
    assert other_events[-1]["cached"] is False
    _quality, quality_events = await run_art(alice, ws, encode(photo(240, 180), "PNG"), preset="quality")
    assert quality_events[-1]["cached"] is False, "the preset is part of the key"
    ws.close()


async def test_a_cache_hit_does_not_reveal_another_users_job(server, new_client):
    alice, bob = await signed_in(new_client, "alice"), await signed_in(new_client, "bob")
    ws_a, ws_b = await WsClient.connect(server, api=alice), await WsClient.connect(server, api=bob)
    data = encode(photo(160, 120, variant=3), "PNG")
    _, alice_events = await run_art(alice, ws_a, data)
    _bob_job, bob_events = await run_art(bob, ws_b, data)
    assert bob_events[-1]["cached"] is True
    for image in bob_events[-1]["images"]:
        assert (await bob.get(image["url"])).status_code == 200
    for image in alice_events[-1]["images"]:
        assert (await bob.get(image["url"])).status_code == 404
    ws_a.close()
    ws_b.close()


async def test_art_submit_over_the_socket_subscribes(server, new_client):
    alice = await signed_in(new_client)
    ws = await WsClient.connect(server, api=alice)
    data = encode(photo(96, 72, variant=5), "JPEG", quality=85)
    assert len(data) < 60_000
    ack = await ws.request("art.submit", timeout=15, image=data, preset="quality")
    assert ack["type"] == "ack" and ack["job"]["preset"] == "quality", ack
    events = await art_events(ws, ack["job"]["id"])
    assert sum(e["type"] == "art.result" for e in events) == 4 and events[-1]["type"] == "gen.done"
    bad = await ws.request("art.submit", image=b"hello")
    assert bad["type"] == "error" and bad["code"] == "unsupported_media_type"
    ws.close()


def png_header_only(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def decompression_bomb() -> bytes:
    """A 1-bit 20,000×20,000 PNG: 400 MP (1.6 GB as RGBA once decoded) in a few hundred kilobytes."""
    side = 20_000
    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_header_only(side, side, idat)


async def test_bad_input_is_refused_clearly_and_nothing_is_stored(server, new_client, settings):
    alice = await signed_in(new_client)
    good = encode(photo(160, 120))
    jpeg = encode(photo(400, 300), "JPEG", quality=90)
    bomb = decompression_bomb()
    assert len(bomb) < 1_000_000
    cases = [
        ("not an image", b"%PDF-1.7 definitely not a photo", "image/png", 415, "unsupported_media_type"),
        ("empty", b"", "image/png", 400, "not_an_image"),
        ("decompression bomb", bomb, "image/png", 400, "image_too_large"),
        ("1×1", encode(Image.new("RGB", (1, 1), "red")), "image/png", 400, "image_too_small"),
        ("30,000 px wide", png_header_only(30_000, 10, zlib.compress(b"\x00" * 10 * 3751)), "image/png", 400,
         "image_too_wide"),
        ("wrong content type", good, "application/json", 415, "unsupported_media_type"),
    ]
    for name, data, content_type, status, code in cases:
        response = await post_photo(alice, data, content_type=content_type)
        assert response.status_code == status, (name, response.text)
        assert error_code(response) == code, (name, response.text)
        assert "image" in response.json()["error"]["message"].lower() or "photo" in \
            response.json()["error"]["message"].lower(), name
    response = await post_photo(alice, good, preset="slowest")
    assert response.status_code == 400 and error_code(response) == "invalid_preset"
    anonymous = new_client()
    response = await post_photo(anonymous, good)
    assert response.status_code == 401
    assert (await alice.get("/api/jobs?mine=1")).json()["jobs"] == []
    blobs = settings.blobs_dir
    assert not blobs.exists() or not any(path.is_file() for path in blobs.rglob("*"))
    # Only the header is read before the job is queued (web processes decode nothing): a photo whose
    # data breaks off fails its job on the worker, with the reason.
    ws = await WsClient.connect(server, api=alice)
    truncated, events = await run_art(alice, ws, jpeg[: len(jpeg) // 2])
    assert events[-1]["type"] == "gen.error" and events[-1]["code"] == "invalid_image", events[-1]
    assert "decoded" in events[-1]["message"]
    ws.close()


async def test_upload_over_the_size_limit_is_refused_before_it_is_read(server, new_client, settings):
    alice = await signed_in(new_client)
    response = await post_photo(alice, b"\x00" * (settings.art_max_upload_bytes + 1))
    assert response.status_code == 413 and error_code(response) == "payload_too_large"


async def test_one_style_result_is_published_as_a_post(server, new_client):
    alice, bob = await signed_in(new_client), await signed_in(new_client, "bob")
    ws = await WsClient.connect(server, api=alice)
    try:
        job, events = await run_art(alice, ws, encode(photo(320, 240), "PNG"))
    finally:
        ws.close()
    oil = next(e["image"] for e in events if e["type"] == "art.result" and e["style"] == "oil")
    response = await alice.post("/api/posts", json={"job": job["id"], "images": [oil["id"]], "title": "Oil harbour",
                                                    "tags": ["oil", "studio"]})
    assert response.status_code == 201, response.text
    post = response.json()["post"]
    assert [image["id"] for image in post["images"]] == [oil["id"]]
    assert post["model"] == job["model"] and post["settings"]["styles"] == job["styles"]
    gallery = (await bob.get("/api/posts?tag=studio")).json()["posts"]
    assert [p["id"] for p in gallery] == [post["id"]]
    assert (await bob.get(gallery[0]["cover"]["thumb_url"])).status_code == 200
    # The other three styles stay private to alice.
    other = next(e["image"]["id"] for e in events if e["type"] == "art.result" and e["style"] == "pencil")
    assert (await bob.get(f"/api/images/{other}/file")).status_code == 404
