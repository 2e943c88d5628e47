"""The AUTOMATIC1111-compatible API over real HTTP, on the tiny model.

The expected key sets are A1111's own pydantic models (modules/api/models.py, and the `info`
JSON of `Processed.js()`), so a field renamed or dropped here fails a test.
"""

import asyncio
import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from inference.demo_model import DEMO_CONTROLNET_NAME
from tests.support.client import ApiClient
from tests.support.photos import encode, photo

MODEL = "demo-tiny"
SMALL = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "steps": 3, "sampler_name": "Euler"}

TEXT_TO_IMAGE_RESPONSE = {"images", "parameters", "info"}
INFO_FIELDS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
    "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
    "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
    "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip", "is_using_inpainting_conditioning",
    "version",
}
TXT2IMG_REQUEST_FIELDS = {
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "sampler_name", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height",
    "restore_faces", "tiling", "do_not_save_samples", "do_not_save_grid", "eta", "denoising_strength",
    "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "override_settings",
    "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at", "disable_extra_networks",
    "firstpass_image", "comments", "enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt", "force_task_id", "sampler_index", "script_name", "script_args",
    "send_images", "save_images", "alwayson_scripts", "infotext",
}
PROGRESS_RESPONSE = {"progress", "eta_relative", "state", "current_image", "textinfo"}
STATE_FIELDS = {"skipped", "interrupted", "job", "job_count", "job_timestamp", "job_no", "sampling_step",
                "sampling_steps"}
SD_MODEL_ITEM = {"title", "model_name", "hash", "sha256", "filename", "config"}
SAMPLER_ITEM = {"name", "aliases", "options"}
SCHEDULER_ITEM = {"name", "label", "aliases", "default_rho", "need_inner_model"}
PNG_INFO_RESPONSE = {"info", "items", "parameters"}


async def sdapi_client(gen_server: str, users, name: str) -> tuple[ApiClient, httpx.AsyncClient]:
    """A signed-up user and an httpx client that calls /sdapi with Basic auth (username + API token)."""
    browser = await users(name)
    token = (await browser.post("/api/tokens", {"name": "a1111"})).json()["token"]
    client = httpx.AsyncClient(base_url=gen_server, auth=(name, token), timeout=120)
    client.headers["X-Test-Token"] = token  # for tests that try the token in other ways
    return browser, client


@pytest.fixture
def gen_settings(gen_settings):
    """A small init-image limit, so the body limit (four base64 images and a MiB) is small to exceed."""
    return gen_settings.model_copy(update={"max_init_image_bytes": 256 * 1024})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def my_jobs(browser: ApiClient) -> list[dict]:
    return (await browser.get("/api/jobs?mine=1&limit=50")).json()["jobs"]


async def test_txt2img_answers_a1111_shapes_and_pngs_carry_parameters(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    response = await sdapi.post("/sdapi/v1/txt2img", json={**SMALL, "seed": 42, "batch_size": 2,
                                                           "negative_prompt": "blurry"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == TEXT_TO_IMAGE_RESPONSE
    assert set(body["parameters"]) >= TXT2IMG_REQUEST_FIELDS
    assert body["parameters"]["steps"] == 3 and body["parameters"]["n_iter"] == 1
    assert isinstance(body["info"], str)
    info = json.loads(body["info"])
    assert set(info) >= INFO_FIELDS
    assert info["seed"] == 42 and len(info["all_seeds"]) == 2 and info["sd_model_name"] == MODEL
    assert info["sampler_name"] == "Euler" and info["steps"] == 3 and info["negative_prompt"] == "blurry"
    assert len(body["images"]) == 2 and len(info["infotexts"]) == 2
    for encoded, infotext, seed in zip(body["images"], info["infotexts"], info["all_seeds"]):
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.text["parameters"] == infotext and f"Seed: {seed}" in infotext
        assert "Negative prompt: blurry" in infotext and "Steps: 3, Sampler: Euler" in infotext
    # One job of the caller's, through the same lifecycle as the browser's.
    [job] = await my_jobs(browser)
    assert job["status"] == "done" and job["seed"] == 42 and job["batch"] == 2
    await sdapi.aclose()


async def test_basic_auth_and_bearer(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    secret = sdapi.headers["X-Test-Token"]
    async with httpx.AsyncClient(base_url=gen_server, timeout=30) as anon:
        bare = await anon.get("/sdapi/v1/sd-models")
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Basic")
        assert set(bare.json()) == {"error", "detail"}
        # No credentials at all: A1111's challenge, not an XSRF refusal (there is no session to forge a request on).
        posted = await anon.post("/sdapi/v1/txt2img", json={"prompt": "a fox"})
        assert posted.status_code == 401 and posted.headers["www-authenticate"].startswith("Basic")
        assert (await anon.get("/sdapi/v1/sd-models", auth=("alice", "va_wrong"))).status_code == 401
        assert (await anon.get("/sdapi/v1/sd-models", auth=("mallory", secret))).status_code == 401
        assert (await anon.get("/sdapi/v1/sd-models", auth=("alice", secret))).status_code == 200
        bearer = await anon.get("/sdapi/v1/sd-models", headers={"Authorization": f"Bearer {secret}"})
        assert bearer.status_code == 200
    # A browser session still needs its XSRF proof for a state change.
    forged = await browser.request("POST", "/sdapi/v1/options", xsrf=False, json={"sd_model_checkpoint": MODEL})
    assert forged.status_code == 403, forged.text
    [item] = (await sdapi.get("/sdapi/v1/sd-models")).json()
    assert set(item) == SD_MODEL_ITEM and item["model_name"] == MODEL and item["title"].startswith(MODEL + " [")
    samplers = (await sdapi.get("/sdapi/v1/samplers")).json()
    assert all(set(s) == SAMPLER_ITEM for s in samplers) and "Euler a" in {s["name"] for s in samplers}
    schedulers = (await sdapi.get("/sdapi/v1/schedulers")).json()
    assert all(set(s) == SCHEDULER_ITEM for s in schedulers)
    assert (await sdapi.get("/sdapi/v1/sd-vae")).json() == []
    assert isinstance((await sdapi.get("/sdapi/v1/loras")).json(), list)
    assert (await sdapi.get("/sdapi/v1/cmd-flags")).json()["api"] is True
    assert {"ram", "cuda"} == set((await sdapi.get("/sdapi/v1/memory")).json())
    missing = await sdapi.get("/sdapi/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json()["detail"] == "Not Found"
    await sdapi.aclose()


async def test_img2img_resize_modes_override_model_and_controlnet(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    wide = encode(photo(160, 96))
    for mode in (0, 1, 2):
        response = await sdapi.post("/sdapi/v1/img2img", json={
            **SMALL, "init_images": [b64(wide)], "resize_mode": mode, "denoising_strength": 0.5, "seed": 3,
            "override_settings": {"sd_model_checkpoint": f"{MODEL} [0123456789]"}})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["parameters"]["init_images"] is None  # not echoed unless include_init_images
        info = json.loads(body["info"])
        assert info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in info["infotexts"][0]
        assert Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).size == (64, 64)
    control = {"alwayson_scripts": {"controlnet": {"args": [
        {"enabled": True, "module": "canny", "model": f"{DEMO_CONTROLNET_NAME} [abcdef12]", "weight": 0.8,
         "image": b64(wide), "threshold_a": 50, "threshold_b": 150, "guidance_start": 0.0, "guidance_end": 0.9},
        {"enabled": False, "module": "openpose", "model": "whatever"}]}}}
    response = await sdapi.post("/sdapi/v1/txt2img", json={**SMALL, **control})
    assert response.status_code == 200, response.text
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert f'ControlNet 0: "Module: canny, Model: {DEMO_CONTROLNET_NAME}, Weight: 0.8' in infotext
    job = (await my_jobs(browser))[0]
    assert job["controls"][0]["low_threshold"] == 50 and job["controls"][0]["end"] == 0.9
    await sdapi.aclose()


async def test_progress_and_interrupt_are_the_callers_own(gen_server, users):
    """Bob's interrupt does not touch Alice's call; hers stops it early and keeps the image as far as it got."""
    alice, sdapi = await sdapi_client(gen_server, users, "alice")
    _bob, bob = await sdapi_client(gen_server, users, "bob")
    idle = (await sdapi.get("/sdapi/v1/progress")).json()
    assert set(idle) == PROGRESS_RESPONSE and set(idle["state"]) >= STATE_FIELDS
    assert idle["progress"] == 0 and idle["current_image"] is None
    call = asyncio.create_task(sdapi.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 150, "width": 128,
                                                                     "height": 128}))
    seen = None
    for _ in range(600):
        seen = (await sdapi.get("/sdapi/v1/progress")).json()
        if seen["state"]["sampling_step"] >= 2 and seen["current_image"]:
            break
        await asyncio.sleep(0.05)
    assert seen and seen["state"]["sampling_step"] >= 2 and seen["state"]["sampling_steps"] == 150, seen
    assert 0 < seen["progress"] < 1 and seen["eta_relative"] > 0
    assert Image.open(io.BytesIO(base64.b64decode(seen["current_image"]))).size[0] > 0
    assert (await sdapi.get("/sdapi/v1/progress?skip_current_image=true")).json()["current_image"] is None
    # Bob sees none of it and cannot stop it.
    assert (await bob.get("/sdapi/v1/progress")).json()["state"]["job"] == ""
    assert (await bob.post("/sdapi/v1/interrupt")).status_code == 200
    await asyncio.sleep(0.5)
    later = (await sdapi.get("/sdapi/v1/progress")).json()
    assert later["state"]["sampling_step"] > seen["state"]["sampling_step"] and not call.done()
    assert (await sdapi.post("/sdapi/v1/interrupt")).json() == {}
    response = await asyncio.wait_for(call, 60)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    [image] = response.json()["images"]
    assert Image.open(io.BytesIO(base64.b64decode(image))).size == (128, 128)
    stopped_at = info["extra_generation_params"]["Interrupted at step"]
    assert info["interrupted"] is True and later["state"]["sampling_step"] <= stopped_at < 150, info
    assert len(info["infotexts"]) == 1 and "Steps: 150" in info["infotexts"][0]
    [job] = await my_jobs(alice)
    assert job["status"] == "done" and len(job["images"]) == 1, job
    await sdapi.aclose()
    await bob.aclose()


async def test_a_native_cancel_of_a_synchronous_call_keeps_nothing(gen_server, users):
    """The browser's Cancel (`DELETE /api/jobs/<id>`, as the WebSocket's gen.cancel) is not an interrupt."""
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    call = asyncio.create_task(sdapi.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 150, "width": 128,
                                                                     "height": 128}))
    for _ in range(600):
        progress = (await sdapi.get("/sdapi/v1/progress")).json()
        if progress["state"]["sampling_step"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert progress["state"]["sampling_step"] >= 2, progress
    assert (await browser.delete(f"/api/jobs/{progress['state']['job']}")).status_code == 200
    response = await asyncio.wait_for(call, 60)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert response.json()["images"] == [] and info["interrupted"] is True
    assert info["extra_generation_params"] == {}
    [job] = await my_jobs(browser)
    assert job["status"] == "cancelled" and not job["images"], job
    await sdapi.aclose()


async def test_a_caller_that_disconnects_cancels_its_job(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    call = asyncio.create_task(sdapi.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 150, "width": 128,
                                                                     "height": 128}))
    for _ in range(600):
        jobs = await my_jobs(browser)
        if jobs and jobs[0]["status"] == "running":
            break
        await asyncio.sleep(0.05)
    call.cancel()  # closes the connection mid-wait
    await asyncio.gather(call, return_exceptions=True)
    await sdapi.aclose()
    for _ in range(200):
        [job] = await my_jobs(browser)
        if job["status"] == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "cancelled" and job["step"] < 150, job


async def test_options_set_the_callers_default_model(gen_server, users):
    _browser, sdapi = await sdapi_client(gen_server, users, "alice")
    options = (await sdapi.get("/sdapi/v1/options")).json()
    assert options["sd_model_checkpoint"] == MODEL and options["samples_format"] == "png"
    refused = await sdapi.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope.safetensors"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "sd_model_checkpoint"]
    accepted = await sdapi.post("/sdapi/v1/options", json={"sd_model_checkpoint": f"{MODEL}.safetensors [12345678]",
                                                           "show_progress_every_n_steps": 3})
    assert accepted.status_code == 200, accepted.text
    assert (await sdapi.get("/sdapi/v1/options")).json()["sd_model_checkpoint"] == MODEL
    await sdapi.aclose()


async def test_png_info_reads_our_pngs(gen_server, users):
    _browser, sdapi = await sdapi_client(gen_server, users, "alice")
    made = (await sdapi.post("/sdapi/v1/txt2img", json={**SMALL, "seed": 9, "negative_prompt": "dull"})).json()
    info = (await sdapi.post("/sdapi/v1/png-info", json={"image": made["images"][0]})).json()
    assert set(info) == PNG_INFO_RESPONSE
    assert info["info"] == json.loads(made["info"])["infotexts"][0]
    parsed = info["parameters"]
    assert parsed["Prompt"] == SMALL["prompt"] and parsed["Negative prompt"] == "dull"
    assert parsed["Seed"] == "9" and parsed["Size-1"] == "64" and parsed["Model"] == MODEL
    plain = (await sdapi.post("/sdapi/v1/png-info", json={"image": b64(encode(photo(), "JPEG"))})).json()
    assert plain["info"] == "" and plain["parameters"] == {}
    await sdapi.aclose()


async def test_two_callers_interleave_fairly(gen_server, users):
    alice_browser, alice = await sdapi_client(gen_server, users, "alice")
    bob_browser, bob = await sdapi_client(gen_server, users, "bob")
    first = asyncio.create_task(alice.post("/sdapi/v1/txt2img", json={**SMALL, "steps": 60, "width": 128,
                                                                      "height": 128}))
    for _ in range(600):
        jobs = await my_jobs(alice_browser)
        if jobs and jobs[0]["status"] == "running":
            break
        await asyncio.sleep(0.05)
    calls = []
    for _ in range(3):
        calls.append(asyncio.create_task(alice.post("/sdapi/v1/txt2img", json=SMALL)))
        await asyncio.sleep(0.1)  # arrival order is part of what is checked
    for _ in range(2):
        calls.append(asyncio.create_task(bob.post("/sdapi/v1/txt2img", json=SMALL)))
        await asyncio.sleep(0.1)
    assert all(r.status_code == 200 for r in await asyncio.gather(first, *calls))
    started = {job["id"]: (job["started_at"], "a") for job in await my_jobs(alice_browser)}
    started |= {job["id"]: (job["started_at"], "b") for job in await my_jobs(bob_browser)}
    owners = [owner for _at, owner in sorted(started.values())]
    assert owners == ["a", "b", "a", "b", "a", "a"], owners
    await alice.aclose()
    await bob.aclose()


async def test_bad_input_is_422_and_queues_nothing(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")

    async def refused(path: str, status: int = 422, **kwargs) -> dict:
        response = await sdapi.post(path, **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        return response.json()

    detail = (await refused("/sdapi/v1/txt2img", content=b"{not json", headers={"Content-Type": "application/json"})
              )["detail"]
    assert detail[0]["type"] == "json_invalid" and detail[0]["loc"][0] == "body"
    typed = (await refused("/sdapi/v1/txt2img", json={**SMALL, "steps": "many"}))["detail"]
    assert typed[0]["loc"] == ["body", "steps"] and typed[0]["msg"]
    for body, loc in [
        ({**SMALL, "sampler_name": "Heun++ Ultra"}, ["body", "sampler_name"]),
        ({**SMALL, "override_settings": {"sd_model_checkpoint": "missing"}},
         ["body", "override_settings", "sd_model_checkpoint"]),
        ({**SMALL, "width": 4096}, ["body", "width"]),
        ({**SMALL, "steps": 0}, ["body", "steps"]),
        ({**SMALL, "enable_hr": True}, ["body", "enable_hr"]),
        ({**SMALL, "prompt": "fox <lora:not-here:0.7>"}, ["body", "prompt"]),
    ]:
        detail = (await refused("/sdapi/v1/txt2img", json=body))["detail"]
        assert detail[0]["loc"] == loc and isinstance(detail[0]["msg"], str), (body, detail)
    for init in ["%%% not base64 %%%", b64(b"plain text, not an image")]:
        detail = (await refused("/sdapi/v1/img2img", json={**SMALL, "init_images": [init]}))["detail"]
        assert detail[0]["loc"] == ["body", "init_images", 0], detail
    inpaint = {**SMALL, "init_images": [b64(encode(photo()))], "mask": b64(encode(photo())),
               "inpaint_full_res": False}
    for body, loc in [
        ({**inpaint, "mask": "%%% not base64 %%%"}, ["body", "mask"]),
        ({**inpaint, "mask": b64(b"GIF89a, or so it says")}, ["body", "mask"]),
        ({**inpaint, "mask": b64(encode(photo())[:200])}, ["body", "mask"]),  # a header, then nothing
        ({**inpaint, "inpaint_full_res_padding": 999}, ["body", "inpaint_full_res_padding"]),
        ({**inpaint, "mask_round": False}, ["body", "mask_round"]),
        ({**inpaint, "inpainting_fill": 4}, ["body", "inpainting_fill"]),
        ({**inpaint, "mask_blur": 500}, ["body", "mask_blur"]),
        ({**inpaint, "latent_mask": b64(encode(photo()))}, ["body", "latent_mask"]),
    ]:
        detail = (await refused("/sdapi/v1/img2img", json=body))["detail"]
        assert detail[0]["loc"] == loc and detail[0]["msg"], (loc, detail)
    huge = await refused("/sdapi/v1/txt2img", 413, content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                         headers={"Content-Type": "application/json"})
    assert huge["error"] == "payload_too_large"
    assert await my_jobs(browser) == []
    await sdapi.aclose()


def half_mask(size: tuple[int, int], *, keep_left: bool = True) -> bytes:
    """White (repaint) on one half, black (keep) on the other."""
    mask = Image.new("L", size, 0 if keep_left else 255)
    mask.paste(255 if keep_left else 0, (size[0] // 2, 0, size[0], size[1]))
    return encode(mask)


def pixels(encoded: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"), dtype=np.int16)


async def test_img2img_with_a_mask_inpaints_only_the_white_half(gen_server, users):
    browser, sdapi = await sdapi_client(gen_server, users, "alice")
    init = photo(64, 64, variant=2)
    original = np.asarray(init, dtype=np.int16)
    # The mask is drawn at another size (as a UI canvas may be): it is stretched to the init image.
    inpaint = {**SMALL, "init_images": [b64(encode(init))], "denoising_strength": 0.9, "seed": 5,
               "inpaint_full_res": False, "inpainting_fill": 1, "mask_blur": 2}

    async def inpainted(**extra) -> np.ndarray:
        response = await sdapi.post("/sdapi/v1/img2img", json={**inpaint, **extra})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["parameters"]["mask"] is None  # not echoed, as A1111
        return pixels(body["images"][0])

    kept_left = await inpainted(mask=b64(half_mask((128, 128))))
    # Away from the feathered edge the kept half is the init image's, pixel for pixel; the other is repainted.
    assert np.abs(kept_left[:, :26] - original[:, :26]).max() <= 1
    assert np.abs(kept_left[:, 38:] - original[:, 38:]).mean() > 10
    # inpainting_mask_invert flips which half is kept.
    kept_right = await inpainted(mask=b64(half_mask((128, 128))), inpainting_mask_invert=1)
    assert np.abs(kept_right[:, 38:] - original[:, 38:]).max() <= 1
    assert np.abs(kept_right[:, :26] - original[:, :26]).mean() > 10
    # An all-black mask keeps everything: the init image comes back, as A1111 answers it.
    black = await inpainted(mask=b64(encode(Image.new("L", (64, 64), 0))))
    assert np.abs(black - original).max() <= 1
    jobs = await my_jobs(browser)
    assert len(jobs) == 3 and all(job["status"] == "done" for job in jobs)
    await sdapi.aclose()


async def test_only_masked_inpainting_repaints_the_masks_surroundings_and_answers_the_whole_picture(gen_server,
                                                                                                  users):
    _browser, sdapi = await sdapi_client(gen_server, users, "alice")
    init = photo(96, 64, variant=4)
    original = np.asarray(init, dtype=np.int16)
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (64, 24, 80, 40))  # a 16 px square on the right
    response = await sdapi.post("/sdapi/v1/img2img", json={
        **SMALL, "init_images": [b64(encode(init))], "mask": b64(encode(mask)), "denoising_strength": 0.9,
        "inpaint_full_res": True, "inpaint_full_res_padding": 4, "mask_blur": 0, "inpainting_fill": 1, "seed": 8})
    assert response.status_code == 200, response.text
    out = pixels(response.json()["images"][0])
    assert out.shape == original.shape  # the whole init image, as A1111 answers "only masked"
    inside = np.abs(out[24:40, 64:80] - original[24:40, 64:80]).mean()
    assert inside > 10, inside
    kept = np.ones(original.shape[:2], bool)
    kept[24:40, 64:80] = False
    assert np.abs(out[kept] - original[kept]).max() <= 1  # everything but the square is the init image's
    await sdapi.aclose()
