"""Stylize end to end on a real server, both backends: presets (create, list, use, retire, unavailable), a photo
rendered live over the WebSocket, another style of the same photo with nothing uploaded, and bad input refused."""

from __future__ import annotations

import io
import json
import shutil
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
    async with running_server(make_settings(backend, data, preview_fps=0)) as (base_url, runtime):
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
