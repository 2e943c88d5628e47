"""Hub files in use: a published checkpoint is in the Generate picker and generates; a LoRA changes the image;
a ControlNet is linked where the engine lists it."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from typing import AsyncIterator

import pytest
import torch
from safetensors.torch import save

from config import Settings
from inference.demo_model import DEMO_MODEL_NAME, export_single_file, tiny_controlnet
from inference.models import CONTROLNET_FOLDER, ModelRegistry
from tests.conftest import make_settings
from tests.support.backends import Backend
from tests.support.client import ApiClient, error_code
from server.runtime import Runtime
from tests.support.server import running_server

SMALL = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "sampler": "Euler", "steps": 2, "seed": 11}
ATTENTIONS = ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0",
              "up_blocks.0.attentions.1"]


@pytest.fixture
async def hub_gen(backend: Backend, tmp_path: Path, demo_models_dir: Path
                  ) -> AsyncIterator[tuple[str, Settings, Runtime]]:
    """A generating server with a models folder of its own (published files are linked into it)."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / DEMO_MODEL_NAME).symlink_to(demo_models_dir / DEMO_MODEL_NAME, target_is_directory=True)
    settings = make_settings(backend, data, preview_fps=0)
    async with running_server(settings) as (base_url, runtime):
        yield base_url, settings, runtime


def tiny_unet_lora(rank: int = 4, seed: int = 0) -> bytes:
    """A LoRA (diffusers/peft layout) for the tiny demo UNet's self-attention, strong enough to show."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in ATTENTIONS:
        for projection in ("to_q", "to_k", "to_v"):
            prefix = f"unet.{block}.transformer_blocks.0.attn1.{projection}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, 64, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(64, rank, generator=generator)
    return save(tensors)


async def run_job(client: ApiClient, **fields) -> bytes:
    response = await client.post("/api/jobs", {**SMALL, **fields})
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    for _ in range(600):
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        if job["status"] in ("done", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "done", job
    return (await client.get(job["images"][0]["url"])).content


async def new_model(client: ApiClient, name: str) -> dict:
    response = await client.post("/api/hub/models", {"name": name})
    assert response.status_code == 201, response.text
    return response.json()["model"]


async def test_a_published_checkpoint_is_in_the_picker_and_generates(hub_gen, tmp_path: Path,
                                                                     demo_models_dir: Path) -> None:
    base_url, settings, runtime = hub_gen
    single = await asyncio.get_running_loop().run_in_executor(
        None, export_single_file, demo_models_dir / DEMO_MODEL_NAME, tmp_path / "tiny.safetensors")
    alice = ApiClient(base_url)
    try:
        await alice.register("alice")
        model = await new_model(alice, "Tiny Checkpoint")
        response = await alice.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/tiny.safetensors",
                                   content=single.read_bytes())
        assert response.status_code == 201, response.text
        file = response.json()["file"]
        assert file["kind"] == "checkpoint" and file["engine_name"] == "alice--tiny-checkpoint--v1--tiny"
        # The tiny model's architecture is not a standard one: its configs sit beside it, as for any such file.
        shutil.copytree(single.with_name("tiny.config"), settings.models_dir / f"{file['engine_name']}.config")
        picker = (await alice.get("/api/models/local")).json()["models"]
        assert file["engine_name"] in {m["name"] for m in picker}
        image = await run_job(alice, model=file["engine_name"])
        assert image.startswith(b"\x89PNG")
        # Hidden by a moderator: out of the picker and refused in new jobs, for everyone; back when restored.
        mona = ApiClient(base_url)
        await mona.register("mona")
        await runtime.users.set_moderator("mona", True)
        assert (await mona.post(f"/api/moderation/model/{model['id']}/hide")).status_code == 200
        for viewer in (alice, mona):
            assert file["engine_name"] not in {m["name"] for m in (await viewer.get("/api/models/local")).json()["models"]}
        refused = await alice.post("/api/jobs", {**SMALL, "model": file["engine_name"]})
        assert refused.status_code == 400 and error_code(refused) == "unknown_model"
        assert (await mona.post(f"/api/moderation/model/{model['id']}/restore")).status_code == 200
        assert file["engine_name"] in {m["name"] for m in (await alice.get("/api/models/local")).json()["models"]}
        await mona.aclose()
        # Deleting the model takes it out of the picker.
        assert (await alice.delete(f"/api/hub/models/{model['id']}")).status_code == 204
        picker = (await alice.get("/api/models/local")).json()["models"]
        assert file["engine_name"] not in {m["name"] for m in picker}
    finally:
        await alice.aclose()


async def test_a_lora_applied_at_a_weight_changes_the_image(hub_gen) -> None:
    base_url, _settings, _runtime = hub_gen
    alice = ApiClient(base_url)
    try:
        await alice.register("alice")
        model = await new_model(alice, "Fox Style")
        response = await alice.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/fox.safetensors",
                                   content=tiny_unet_lora())
        assert response.status_code == 201, response.text
        file = response.json()["file"]
        assert file["kind"] == "lora"
        lora = file["engine_name"]
        plain = await run_job(alice, model=DEMO_MODEL_NAME)
        styled = await run_job(alice, model=DEMO_MODEL_NAME, loras=[{"name": lora, "weight": 1.0}])
        half = await run_job(alice, model=DEMO_MODEL_NAME, loras=[{"name": lora, "weight": 0.5}])
        again = await run_job(alice, model=DEMO_MODEL_NAME)
        digests = [hashlib.sha256(x).hexdigest() for x in (plain, styled, half, again)]
        assert digests[0] != digests[1] and digests[1] != digests[2] and digests[0] != digests[2]
        assert digests[3] == digests[0]  # the LoRA was taken off the cached model afterwards
        unknown = await alice.post("/api/jobs", {**SMALL, "model": DEMO_MODEL_NAME,
                                                 "loras": [{"name": "nope", "weight": 1}]})
        assert unknown.status_code == 400 and error_code(unknown) == "unknown_lora"
        too_strong = await alice.post("/api/jobs", {**SMALL, "model": DEMO_MODEL_NAME,
                                                    "loras": [{"name": lora, "weight": 9}]})
        assert too_strong.status_code == 400 and error_code(too_strong) == "invalid_lora"
    finally:
        await alice.aclose()


async def test_a_published_controlnet_is_linked_where_the_engine_lists_it(hub_gen) -> None:
    base_url, settings, _runtime = hub_gen
    controlnet = await asyncio.get_running_loop().run_in_executor(None, tiny_controlnet)
    data = save({k: v.contiguous() for k, v in controlnet.state_dict().items()})
    alice = ApiClient(base_url)
    try:
        await alice.register("alice")
        model = await new_model(alice, "Tiny Canny")
        response = await alice.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/canny.safetensors",
                                   content=data)
        assert response.status_code == 201, response.text
        file = response.json()["file"]
        assert file["kind"] == "controlnet" and file["engine_name"] == "alice--tiny-canny--v1--canny"
        link = settings.models_dir / CONTROLNET_FOLDER / f"{file['engine_name']}.safetensors"
        assert link.is_symlink()
        # The tiny ControlNet is not the standard SD 1.5 width: the engine sees it and says what it needs (its
        # config beside it), rather than failing inside a job.
        registry = ModelRegistry(settings.models_dir)
        refusal = registry.refused[f"{CONTROLNET_FOLDER}/{file['engine_name']}.safetensors"]
        assert "not the standard sd1 ControlNet" in refusal and f"{file['engine_name']}.config" in refusal
        assert (await alice.delete(f"/api/hub/models/{model['id']}")).status_code == 204
        assert not link.exists()
    finally:
        await alice.aclose()
