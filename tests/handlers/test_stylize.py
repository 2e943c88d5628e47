"""Stylize end to end on a real server, both backends: presets (create, list, use, retire, unavailable), a photo
rendered live over the WebSocket, another style of the same photo with nothing uploaded, and bad input refused."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from PIL import Image

from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME
from inference.images import EXIF_ORIENTATION_TAG
from inference.models import CONTROLNET_FOLDER
from server.runtime import Runtime
from tests.conftest import make_settings
from tests.handlers.test_art import decompression_bomb
from tests.support.backends import Backend
from tests.support.client import ApiClient, error_code
from tests.support.photos import encode, photo
from tests.support.server import running_server
from tests.support.ws import WsClient

PRESET = {
    "name": "ink-hero", "title_en": "Ink hero", "title_zh": "水墨英雄", "description_en": "Bold ink lines.",
    "description_zh": "粗犷的墨线。", "checkpoint": DEMO_MODEL_NAME,
    "controls": [{"model": DEMO_CONTROLNET_NAME, "preprocessor": "canny", "scale": 1.0}],
    "prompt_template": "{subject}, ink drawing, game art", "negative_prompt": "blurry", "strength": 0.7,
    "steps": 4, "guidance": 5.0, "sampler": "Euler a", "side_px": 256,
}
FINAL = ("gen.done", "gen.error", "gen.cancelled")
FRONTEND_INDEX = Path(__file__).resolve().parents[2] / "frontend" / "index.html"


@pytest.fixture
async def stylize(backend: Backend, tmp_path: Path, demo_models_dir: Path
                  ) -> AsyncIterator[tuple[str, Runtime, Path]]:
    """A generating server whose models folder links the demo model and ControlNet (a test may unlink them)."""
    data = tmp_path / "data"
    models = data / "models"
    (models / CONTROLNET_FOLDER).mkdir(parents=True)
    (models / DEMO_MODEL_NAME).symlink_to(demo_models_dir / DEMO_MODEL_NAME, target_is_directory=True)
    (models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME).symlink_to(
        demo_models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, target_is_directory=True)
    # The app's page as the build writes it (the share and post pages get their link-preview tags in it).
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(FRONTEND_INDEX, dist / "index.html")
    async with running_server(make_settings(backend, data, preview_fps=0, frontend_dist=dist)) as (base_url, runtime):
        yield base_url, runtime, models


@pytest.fixture
async def people(stylize) -> AsyncIterator:
    """`people("mona", moderator=True)`: signed-in clients of the stylize server, closed after the test."""
    base_url, runtime, _models = stylize
    clients: list[ApiClient] = []

    async def make(name: str, *, moderator: bool = False) -> ApiClient:
        client = ApiClient(base_url)
        await client.register(name)
        if moderator:
            await runtime.users.set_moderator(name, True)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def phone_jpeg(width: int = 400, height: int = 300, orientation: int = 6) -> bytes:
    """A JPEG stored sideways with an EXIF orientation, as phones write portrait shots."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    return encode(photo(width, height, variant=3), "JPEG", quality=90, exif=exif.tobytes())


async def post_photo(client: ApiClient, data: bytes, *, content_type: str = "image/jpeg", **query: str):
    path = "/api/stylize?" + "&".join(f"{name}={value}" for name, value in query.items())
    return await client.post(path, content=data, headers={"Content-Type": content_type})


async def events_of(ws: WsClient, job_id: str, timeout: float = 60.0) -> list[dict]:
    await ws.send("sub", topic=f"job:{job_id}", since=0)
    events = []
    while not events or events[-1]["type"] not in FINAL:
        events.append(await ws.wait_for(lambda e: e.get("job") == job_id and e.get("type", "").startswith("gen."),
                                        timeout))
    return events


async def create_preset(moderator: ApiClient, **changes) -> dict:
    response = await moderator.post("/api/presets", {**PRESET, **changes})
    assert response.status_code == 201, response.text
    return response.json()["preset"]


def blob_files(runtime: Runtime) -> set[Path]:
    root = runtime.settings.blobs_dir
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


async def test_presets_are_created_listed_used_and_retired(stylize, people):
    base_url, runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    preset = await create_preset(mona)
    assert preset["available"] is True and preset["problems"] == []
    assert preset["title"] == {"en": "Ink hero", "zh": "水墨英雄"} and preset["retired"] is False
    assert preset["controls"][0]["low_threshold"] == 100, "a unit is stored whole, with the engine's defaults"
    anonymous = ApiClient(base_url)
    listed = (await anonymous.get("/api/presets")).json()["presets"]
    await anonymous.aclose()
    assert [p["name"] for p in listed] == ["ink-hero"] and listed[0]["available"] is True
    assert (await alice.get("/api/presets/ink-hero")).json()["preset"]["id"] == preset["id"]

    # Use: a job from a photo, its settings resolved from the preset.
    response = await post_photo(alice, encode(photo(320, 240), "JPEG"), preset="ink-hero", subject="a%20fox")
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert job["kind"] == "stylize" and job["model"] == DEMO_MODEL_NAME and job["preset"] == "ink-hero"
    assert job["prompt"] == "a fox, ink drawing, game art" and job["mode"] == "img2img"
    assert (job["width"], job["height"]) == (296, 224), "the photo's aspect at about 256² pixels, in 8s"
    assert "image" not in json.dumps(job["controls"]), "units are stored without the photo"

    # Edit: a moderator changes some fields, the rest stay.
    response = await mona.patch(f"/api/presets/{preset['id']}", {"steps": 6, "strength": None})
    assert response.status_code == 200, response.text
    edited = response.json()["preset"]
    assert edited["steps"] == 6 and edited["strength"] is None and edited["guidance"] == 5.0

    # Retire: gone from the cards, refused for new jobs, still listed for moderators.
    response = await mona.delete("/api/presets/ink-hero")
    assert response.status_code == 200 and response.json()["preset"]["retired"] is True
    assert (await alice.get("/api/presets")).json()["presets"] == []
    assert [p["name"] for p in (await mona.get("/api/presets?all=1")).json()["presets"]] == ["ink-hero"]
    assert (await alice.get("/api/presets?all=1")).status_code == 403
    response = await post_photo(alice, encode(photo(320, 240), "JPEG"), preset="ink-hero")
    assert response.status_code == 409 and error_code(response) == "preset_retired"
    response = await mona.patch("/api/presets/ink-hero", {"retired": False})
    assert response.json()["preset"]["retired"] is False
    assert len((await alice.get("/api/presets")).json()["presets"]) == 1


async def test_non_moderators_cannot_create_edit_or_retire_presets(stylize, people):
    base_url, _runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    response = await alice.post("/api/presets", PRESET)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    await create_preset(mona)
    for response in (await alice.patch("/api/presets/ink-hero", {"steps": 9}), await alice.delete("/api/presets/ink-hero"),
                     await alice.put("/api/presets/ink-hero/cover", content=encode(photo(64, 64)),
                                     headers={"Content-Type": "image/png"})):
        assert response.status_code == 403 and error_code(response) == "forbidden", response.text
    anonymous = ApiClient(base_url)
    assert (await anonymous.post("/api/presets", PRESET)).status_code == 401
    await anonymous.aclose()
    assert (await alice.get("/api/presets/ink-hero")).json()["preset"]["steps"] == 4


async def test_preset_fields_are_checked_with_the_engines_rules(stylize, people):
    _base_url, _runtime, models = stylize
    mona = await people("mona", moderator=True)
    # A ControlNet whose config says SD 2.x beside the SD 1.x demo model: made for another base.
    shutil.copytree(models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, models / CONTROLNET_FOLDER / "sd2-control")
    config = models / CONTROLNET_FOLDER / "sd2-control" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "cross_attention_dim": 1024}))
    cases = [
        ({"checkpoint": "no-such-model"}, "unknown_model"),
        ({"controls": [{"model": "no-such-control"}]}, "unknown_controlnet"),
        ({"controls": [{"model": "sd2-control"}]}, "controlnet_base_mismatch"),
        ({"controls": []}, "invalid_control"),
        ({"controls": [{"model": DEMO_CONTROLNET_NAME, "scale": 3.0}]}, "invalid_control"),
        ({"loras": [{"name": "no-such-lora", "weight": 1.0}]}, "unknown_lora"),
        ({"sampler": "Fastest"}, "invalid_sampler"),
        ({"steps": 0}, "invalid_steps"),
        ({"strength": 1.5}, "invalid_strength"),
        ({"side_px": 100}, "invalid_size"),
        ({"name": "Bad Name!"}, "invalid_name"),
        ({"title_en": ""}, "invalid_input"),
        ({"surprise": 1}, "invalid_input"),
    ]
    for changes, code in cases:
        response = await mona.post("/api/presets", {**PRESET, **changes})
        assert response.status_code == 400, (changes, response.text)
        assert error_code(response) == code, (changes, response.text)
    mismatch = await mona.post("/api/presets", {**PRESET, "controls": [{"model": "sd2-control"}]})
    assert "SD 2.x" in mismatch.json()["error"]["message"] and "SD 1.x" in mismatch.json()["error"]["message"]
    await create_preset(mona)
    response = await mona.post("/api/presets", PRESET)
    assert response.status_code == 409 and error_code(response) == "preset_exists"
    assert len((await mona.get("/api/presets")).json()["presets"]) == 1


async def test_a_preset_whose_model_was_deleted_lists_as_unavailable_and_refuses_jobs(stylize, people,
                                                                                        demo_models_dir):
    _base_url, runtime, models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    await create_preset(mona)
    (models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME).unlink()
    listed = (await alice.get("/api/presets")).json()["presets"][0]
    assert listed["available"] is False
    assert [(p["code"], p["name"]) for p in listed["problems"]] == [("missing_controlnet", DEMO_CONTROLNET_NAME)]
    before = blob_files(runtime)
    response = await post_photo(alice, encode(photo(320, 240), "JPEG"), preset="ink-hero")
    assert response.status_code == 409 and error_code(response) == "preset_unavailable"
    assert DEMO_CONTROLNET_NAME in response.json()["error"]["message"]
    assert blob_files(runtime) == before and (await alice.get("/api/jobs")).json()["jobs"] == []

    # The checkpoint gone too: both are named.
    (models / DEMO_MODEL_NAME).unlink()
    problems = (await alice.get("/api/presets")).json()["presets"][0]["problems"]
    assert {p["code"] for p in problems} == {"missing_model", "missing_controlnet"}

    # Both back, but the ControlNet file replaced by one made for SD 2.x: unavailable, saying why.
    (models / DEMO_MODEL_NAME).symlink_to(demo_models_dir / DEMO_MODEL_NAME, target_is_directory=True)
    replaced = models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME
    shutil.copytree(demo_models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, replaced)
    config = json.loads((replaced / "config.json").read_text())
    (replaced / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    problems = (await alice.get("/api/presets")).json()["presets"][0]["problems"]
    assert [p["code"] for p in problems] == ["controlnet_base_mismatch"]
    response = await post_photo(alice, encode(photo(320, 240), "JPEG"), preset="ink-hero")
    assert response.status_code == 409 and error_code(response) == "preset_unavailable"
    assert "SD 2.x" in response.json()["error"]["message"]
    # A moderator can still retire it (nothing to check), and edits are checked against the folder as it is.
    response = await mona.patch("/api/presets/ink-hero", {"steps": 5})
    assert response.status_code == 400 and error_code(response) == "controlnet_base_mismatch"
    response = await mona.delete("/api/presets/ink-hero")
    assert response.status_code == 200 and response.json()["preset"]["retired"] is True


async def test_a_photo_renders_live_over_the_websocket_then_another_style_uploads_nothing(stylize, people):
    base_url, runtime, _models = stylize
    mona, alice, bob = await people("mona", moderator=True), await people("alice"), await people("bob")
    await create_preset(mona)
    await create_preset(mona, name="ink-soft", title_en="Soft ink", prompt_template="{subject}, soft ink wash",
                        controls=[{"model": DEMO_CONTROLNET_NAME, "preprocessor": "canny", "scale": 0.6}])
    ws = await WsClient.connect(base_url, api=alice)
    try:
        # A portrait shot stored sideways (400×300 with EXIF orientation 6): rendered upright, 224×296.
        response = await post_photo(alice, phone_jpeg(400, 300), preset="ink-hero", subject="a%20lighthouse")
        assert response.status_code == 202, response.text
        first = response.json()["job"]
        assert (first["photo_width"], first["photo_height"]) == (300, 400)
        assert (first["width"], first["height"]) == (224, 296)
        events = await events_of(ws, first["id"])
        kinds = [event["type"] for event in events]
        assert kinds[-1] == "gen.done", events[-1]
        assert kinds.index("gen.started") < kinds.index("gen.control") < kinds.index("gen.progress")
        control = next(event for event in events if event["type"] == "gen.control")["images"]
        assert [(c["unit"], c["model"], c["preprocessor"], c["mime"]) for c in control] == \
            [(0, DEMO_CONTROLNET_NAME, "canny", "image/png")]
        edges = Image.open(io.BytesIO(control[0]["image"]))
        assert edges.size == (224, 296) and len(np.unique(np.asarray(edges.convert("L")))) <= 2, "a canny edge map"
        previews = [event for event in events if event["type"] == "gen.preview"]
        assert previews and all(p["image"][:4] == b"RIFF" for p in previews), "live WebP previews"
        done = events[-1]
        image = done["images"][0]
        assert (image["width"], image["height"]) == (224, 296)
        png = await alice.get(image["url"])
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (224, 296)
        parameters = Image.open(io.BytesIO(png.content)).info["parameters"]
        assert "a lighthouse, ink drawing, game art" in parameters and "ControlNet 0: " in parameters
        record = (await alice.get(f"/api/jobs/{first['id']}")).json()["job"]
        assert record["status"] == "done" and record["kind"] == "stylize"

        # Try another style: the photo of the first job, by reference. Nothing is uploaded or stored again,
        # and the worker decodes and preprocesses nothing again (its caches are keyed by the photo's sha256).
        blobs_before = blob_files(runtime)
        response = await alice.post(f"/api/stylize?preset=ink-soft&photo_of={first['id']}")
        assert response.status_code == 202, response.text
        second = response.json()["job"]
        assert second["prompt"] == "soft ink wash" and (second["width"], second["height"]) == (224, 296)
        events = await events_of(ws, second["id"])
        assert events[-1]["type"] == "gen.done", events[-1]
        first_timings, second_timings = done["timings"], events[-1]["timings"]
        assert second_timings["control_s"] < first_timings["control_s"], (first_timings, second_timings)
        assert second_timings["encode_image_s"] < first_timings["encode_image_s"], (first_timings, second_timings)
        new_blobs = blob_files(runtime) - blobs_before
        assert len(new_blobs) == 2, "only the new result's PNG and thumbnail"
        rows = {job.id: job for job in [await runtime.jobs.records.get(first["id"]),
                                        await runtime.jobs.records.get(second["id"])]}
        assert rows[first["id"]].init_image_sha256 == rows[second["id"]].init_image_sha256

        # The same over POST /api/jobs (what scripts and bots send), and only one's own photos.
        response = await alice.post("/api/jobs", {"kind": "stylize", "preset": "ink-soft", "photo_of": first["id"],
                                                  "subject": "at night"})
        assert response.status_code == 202 and response.json()["job"]["prompt"] == "at night, soft ink wash"
        response = await bob.post("/api/jobs", {"kind": "stylize", "preset": "ink-soft", "photo_of": first["id"]})
        assert response.status_code == 400 and error_code(response) == "unknown_photo"
    finally:
        ws.close()


async def test_stylize_over_gen_submit_with_the_photo_as_bytes(stylize, people):
    base_url, _runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    preset = await create_preset(mona)
    ws = await WsClient.connect(base_url, api=alice)
    try:
        # A frame is at most 64 KiB: a small JPEG fits (phones upload over HTTP, with progress).
        ack = await ws.request("gen.submit", kind="stylize", preset=preset["id"], subject="a cat",
                               init_image=encode(photo(200, 200), "JPEG", quality=80))
        assert ack["type"] == "ack" and ack["job"]["kind"] == "stylize", ack
        job_id = ack["job"]["id"]
        final = await ws.wait_for(lambda e: e.get("job") == job_id and e.get("type") in FINAL, 60)
        assert final["type"] == "gen.done", final
    finally:
        ws.close()


def sixteen_bit_png() -> bytes:
    grey = (np.asarray(photo(200, 150).convert("L"), dtype=np.uint16) * 257)
    return encode(Image.fromarray(grey))  # mode I;16


async def test_bad_photos_and_presets_are_refused_clearly_and_nothing_is_stored(stylize, people):
    base_url, runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    await create_preset(mona)
    good = encode(photo(320, 240), "JPEG")
    refused = [
        ("not an image", b"%PDF-1.7 not a photo", "image/jpeg", {}, 415, "unsupported_media_type"),
        ("empty body and no photo_of", b"", "image/jpeg", {}, 400, "not_an_image"),
        ("decompression bomb", decompression_bomb(), "image/png", {}, 400, "image_too_large"),
        ("a GIF", encode(photo(120, 90), "GIF"), "image/gif", {}, 400, "invalid_image"),
        ("a panorama", encode(photo(900, 100), "JPEG"), "image/jpeg", {}, 400, "photo_too_wide"),
        ("wrong content type", good, "text/plain", {}, 415, "unsupported_media_type"),
        ("unknown preset", good, "image/jpeg", {"preset": "no-such-style"}, 400, "unknown_preset"),
        ("no preset", good, "image/jpeg", {"preset": ""}, 400, "unknown_preset"),
        ("a photo and photo_of", good, "image/jpeg", {"photo_of": "0" * 32}, 400, "invalid_photo"),
        ("photo_of nothing", b"", "image/jpeg", {"photo_of": "f" * 32}, 400, "unknown_photo"),
        ("subject too long", good, "image/jpeg", {"subject": "x" * 301}, 400, "prompt_too_long"),
        ("bad seed", good, "image/jpeg", {"seed": "-1"}, 400, "invalid_input"),
    ]
    before = blob_files(runtime)
    for name, data, content_type, query, status, code in refused:
        response = await post_photo(alice, data, content_type=content_type, **{"preset": "ink-hero", **query})
        assert response.status_code == status, (name, response.text)
        assert error_code(response) == code, (name, response.text)
    response = await post_photo(alice, b"\x00" * (runtime.settings.stylize_max_upload_bytes + 1), preset="ink-hero")
    assert response.status_code == 413 and error_code(response) == "payload_too_large"
    anonymous = ApiClient(base_url)
    assert (await post_photo(anonymous, good, preset="ink-hero")).status_code == 401
    await anonymous.aclose()
    assert blob_files(runtime) == before, "nothing half-stored"
    assert (await alice.get("/api/jobs")).json()["jobs"] == []

    # Awkward photos that are photos all the same: each renders upright at its aspect.
    exif_rotated = {orientation: phone_jpeg(400, 200, orientation) for orientation in (3, 6, 8)}
    accepted = [
        ("16-bit PNG", sixteen_bit_png(), "image/png", (296, 224)),
        ("CMYK JPEG", encode(photo(320, 240).convert("CMYK"), "JPEG"), "image/jpeg", (296, 224)),
        ("PNG with alpha", encode(photo(320, 240).convert("RGBA"), "PNG"), "image/png", (296, 224)),
        ("EXIF 3 (upside down)", exif_rotated[3], "image/jpeg", (360, 184)),
        ("EXIF 6 (turned right)", exif_rotated[6], "image/jpeg", (184, 360)),
        ("EXIF 8 (turned left)", exif_rotated[8], "image/jpeg", (184, 360)),
    ]
    ws = await WsClient.connect(base_url, api=alice)
    try:
        for name, data, content_type, size in accepted:
            response = await post_photo(alice, data, content_type=content_type, preset="ink-hero")
            assert response.status_code == 202, (name, response.text)
            job = response.json()["job"]
            assert (job["width"], job["height"]) == size, name
            events = await events_of(ws, job["id"])
            assert events[-1]["type"] == "gen.done", (name, events[-1])
            control = next(event for event in events if event["type"] == "gen.control")["images"][0]
            assert Image.open(io.BytesIO(control["image"])).size == size, name
    finally:
        ws.close()


class _Meta(HTMLParser):
    """The <meta property|name=... content=...> tags and the <title> of a page, as a link previewer reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        if tag == "meta" and "content" in values and ("property" in values or "name" in values):
            self.tags[values.get("property") or values["name"]] = values["content"]
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def page_meta(html: str) -> _Meta:
    parser = _Meta()
    parser.feed(html)
    return parser


async def render(client: ApiClient, ws: WsClient, data: bytes, **query: str) -> tuple[dict, dict]:
    """A stylize job run to the end: the job and its gen.done."""
    response = await post_photo(client, data, **query)
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    events = await events_of(ws, job["id"])
    assert events[-1]["type"] == "gen.done", events[-1]
    return job, events[-1]


async def test_a_share_page_carries_open_graph_tags_in_its_html_with_an_image_anyone_can_read(stylize, people):
    base_url, _runtime, _models = stylize
    mona, alice, bob = await people("mona", moderator=True), await people("alice"), await people("bob")
    await create_preset(mona)
    ws = await WsClient.connect(base_url, api=alice)
    try:
        job, done = await render(alice, ws, phone_jpeg(400, 300), preset="ink-hero")
    finally:
        ws.close()
    image = done["images"][0]
    title = 'My "fox" <script>alert(1)</script> & co'
    response = await alice.post("/api/shares", {"image": image["id"], "title": title})
    assert response.status_code == 201, response.text
    share = response.json()["share"]
    assert share["url"] == f"/s/{share['id']}" and share["preset"]["name"] == "ink-hero"
    assert share["original_url"] is None, "the photo is not shown unless its owner chooses to"
    again = await alice.post("/api/shares", {"image": image["id"], "title": title})
    assert again.status_code == 200 and again.json()["share"]["id"] == share["id"], "one link per image"
    assert (await bob.post("/api/shares", {"image": image["id"]})).status_code == 404, "only one's own images"

    anonymous = ApiClient(base_url)
    try:
        page = await anonymous.get(share["url"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>alert(1)" not in page.text, "every value is escaped"
        meta = page_meta(page.text)
        assert meta.title == f"{title} · Visionary Art"
        assert meta.tags["og:title"] == title and meta.tags["twitter:title"] == title
        assert meta.tags["og:url"] == base_url + share["url"]
        assert meta.tags["og:image"] == base_url + image["url"] == meta.tags["twitter:image"]
        assert (meta.tags["og:image:width"], meta.tags["og:image:height"]) == ("224", "296")
        assert meta.tags["twitter:card"] == "summary_large_image" and "Ink hero" in meta.tags["og:description"]
        assert '<div id="app">' in page.text, "the app itself still loads"
        # The image the card names is readable by anyone (a link previewer is nobody in particular).
        picture = await anonymous.get(meta.tags["og:image"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(picture.content)).size == (224, 296)
        assert (await anonymous.get(f"/api/shares/{share['id']}")).json()["share"]["title"] == title
        assert (await anonymous.get(f"/api/shares/{share['id']}/original")).status_code == 404
        # Only that image: the job stays private.
        assert (await anonymous.get(f"/api/jobs/{job['id']}")).status_code == 404

        # The owner shows the original: an upright copy without EXIF, readable by anyone with the link.
        response = await alice.post("/api/shares", {"image": image["id"], "show_original": True})
        assert response.status_code == 200 and response.json()["share"]["original_url"]
        original = await anonymous.get(response.json()["share"]["original_url"])
        assert original.status_code == 200 and original.headers["content-type"] == "image/webp"
        shown = Image.open(io.BytesIO(original.content))
        assert shown.size == (300, 400) and not shown.getexif(), "upright, and no metadata leaves"

        # A page for nothing is the plain app (which says so); a removed share is gone with its image.
        plain = page_meta((await anonymous.get("/s/AAAAAAAAAAAA")).text)
        assert "og:image" not in plain.tags and plain.title == "Visionary Art"
        assert (await bob.delete(f"/api/shares/{share['id']}")).status_code == 403
        assert (await alice.delete(f"/api/shares/{share['id']}")).status_code == 204
        assert (await anonymous.get(meta.tags["og:image"])).status_code == 404
        assert "og:image" not in page_meta((await anonymous.get(share["url"])).text).tags
    finally:
        await anonymous.aclose()


async def test_post_pages_carry_the_same_tags_and_show_the_photo_only_if_chosen(stylize, people):
    base_url, _runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    await create_preset(mona)
    ws = await WsClient.connect(base_url, api=alice)
    try:
        first, first_done = await render(alice, ws, phone_jpeg(400, 300), preset="ink-hero")
        second, second_done = await render(alice, ws, b"", preset="ink-hero", photo_of=first["id"])
    finally:
        ws.close()
    response = await alice.post("/api/posts", {"job": first["id"], "title": "Harbour in ink", "description": "At dusk."})
    assert response.status_code == 201, response.text
    hidden_photo = response.json()["post"]
    assert hidden_photo["original_url"] is None and hidden_photo["settings"]["preset"] == "ink-hero"
    response = await alice.post("/api/posts", {"job": second["id"], "title": "Soft", "show_original": True,
                                               "nsfw": True})
    shown_photo = response.json()["post"]
    anonymous = ApiClient(base_url)
    try:
        assert (await anonymous.get(f"/api/posts/{hidden_photo['id']}/original")).status_code == 404
        original = await anonymous.get(shown_photo["original_url"])
        assert original.status_code == 200 and Image.open(io.BytesIO(original.content)).size == (300, 400)

        meta = page_meta((await anonymous.get(f"/p/{hidden_photo['id']}")).text)
        cover = first_done["images"][0]
        assert meta.tags["og:title"] == "Harbour in ink" and meta.tags["og:description"] == "At dusk."
        assert meta.tags["og:image"] == base_url + cover["url"] and meta.tags["og:url"] == f"{base_url}/p/{hidden_photo['id']}"
        assert (await anonymous.get(meta.tags["og:image"])).status_code == 200
        # An NSFW post's card has no picture: a chat would show it unblurred.
        nsfw = page_meta((await anonymous.get(f"/p/{shown_photo['id']}")).text)
        assert nsfw.tags["og:title"] == "Soft" and "og:image" not in nsfw.tags and nsfw.tags["twitter:card"] == "summary"

        # The owner stops showing the photo.
        response = await alice.patch(f"/api/posts/{shown_photo['id']}", {"show_original": False})
        assert response.status_code == 200 and response.json()["post"]["original_url"] is None
        assert (await anonymous.get(shown_photo["original_url"])).status_code == 404
        response = await alice.patch(f"/api/posts/{hidden_photo['id']}", {"show_original": "yes"})
        assert response.status_code == 400
    finally:
        await anonymous.aclose()


async def test_a_moderator_sets_a_cover_that_keeps_no_metadata(stylize, people):
    base_url, _runtime, _models = stylize
    mona = await people("mona", moderator=True)
    await create_preset(mona)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS: where the picture was taken
    cover = encode(photo(900, 600), "JPEG", exif=exif.tobytes())
    response = await mona.put("/api/presets/ink-hero/cover", content=cover, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    url = response.json()["preset"]["cover_url"]
    anonymous = ApiClient(base_url)
    try:
        shown = await anonymous.get(url)
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/webp"
        image = Image.open(io.BytesIO(shown.content))
        assert image.size == (512, 768) and not image.getexif(), "upright, at most 768 px, no EXIF or GPS"
    finally:
        await anonymous.aclose()
    response = await mona.put("/api/presets/ink-hero/cover", content=b"not an image", headers={"Content-Type": "image/png"})
    assert response.status_code == 415
    response = await mona.put("/api/presets/no-such/cover", content=cover, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 404


async def test_a_lora_published_on_the_hub_renders_in_a_preset_and_shows(stylize, people):
    """The hub's files in use, not only listed: a preset with a published LoRA renders, and the LoRA changes the
    picture (same photo, same seed, the same preset without it)."""
    from tests.handlers.test_modelhub_generate import tiny_unet_lora

    _base_url, _runtime, _models = stylize
    mona, alice = await people("mona", moderator=True), await people("alice")
    model = (await mona.post("/api/hub/models", {"name": "Hub ink"})).json()["model"]
    response = await mona.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/ink.safetensors",
                              content=tiny_unet_lora())
    assert response.status_code == 201, response.text
    lora = response.json()["file"]["engine_name"]
    await create_preset(mona, name="plain")
    await create_preset(mona, name="inked", loras=[{"name": lora, "weight": 1.0}])

    async def render(preset: str) -> bytes:
        response = await post_photo(alice, encode(photo(128, 96), "PNG"), content_type="image/png", preset=preset,
                                    seed="7")
        assert response.status_code == 202, response.text
        job_id = response.json()["job"]["id"]
        for _ in range(600):
            job = (await alice.get(f"/api/jobs/{job_id}")).json()["job"]
            if job["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "done", job["error"]
        return (await alice.get(job["images"][0]["url"])).content

    plain, inked = await render("plain"), await render("inked")
    pixels = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16) for png in (plain, inked)]
    assert pixels[0].shape == pixels[1].shape and np.abs(pixels[0] - pixels[1]).mean() > 1, "the LoRA shows"
