"""The AUTOMATIC1111 web UI's API (`/sdapi/v1/...`) mapped onto our one job lifecycle.

Scripts written for A1111 call txt2img/img2img and poll progress; here each call is a job of
its caller, admitted by the same fair queue, caps and prompt screening as the browser, and the
answer has A1111's shapes (its pydantic models in `modules/api/models.py`, field for field).
What differs from A1111 is written in docs/openapi.yaml (tag `a1111`): progress, interrupt and
options are the caller's own, not the server's; hires fix, scripts, face restoration and tiling
are refused rather than ignored.

Nothing here imports torch: images are re-framed with PIL on the CPU pool (img2img resize modes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import io
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageFilter, ImageOps, PngImagePlugin
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inference.images import probe_image, upright_size
from inference.errors import InvalidRequest
from inference.requests import INPAINTING_FILLS, MAX_BATCH, MAX_INPAINT_PADDING_PX
from inference.sampler_names import DEFAULT_SAMPLER, SAMPLERS
from server.auth import Principal
from server.errors import AppError, InvalidInput
from server.executors import Executors
from server.hub import Hub, frames
from server.jobs import JobService
from server.jobs.records import FINAL_EVENTS, FINISHED
from server.store.models import GenerationJob, User

log = logging.getLogger(__name__)

# `<lora:name:weight>` (A1111's extra-network syntax); a missing weight is 1.0, a third part is ignored.
LORA_RE = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>")
# sd-models titles are "name [hash]"; callers send titles, names or file names back.
TITLE_HASH_RE = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
# How often a waiting call looks at the job row too, in case an event was lost (the row is the truth).
WAIT_POLL_SECS = 2.0
# A caller polling progress asks the database which job is theirs at most this often (A1111 clients poll
# at up to 10 Hz; a job that starts or ends is noticed up to this late, its steps and preview are live).
CURRENT_JOB_CACHE_SECS = 1.0
# ... and, while the queue shows that job waiting or running (so it is still the caller's current one), at
# most this often: the live state already tells when it ends; this bounds a leftover one (a lost worker).
ACTIVE_JOB_CACHE_SECS = 5.0
CURRENT_JOB_CACHE_ENTRIES = 10_000
SCHEDULERS = [
    {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1.0, "need_inner_model": False},
    {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False},
]
# sd-webui-controlnet module names -> our preprocessors.
CONTROLNET_MODULES = {"none": "none", "canny": "canny", "softedge": "softedge", "softedge_hed": "softedge",
                      "softedge_pidinet": "softedge", "softedge_hedsafe": "softedge", "tile": "tile",
                      "tile_resample": "tile"}
VERSION = "visionary-art"
# A1111's mask blur slider goes to 64 px; a wider blur only costs time.
MAX_MASK_BLUR_PX = 64


class SdapiInvalid(InvalidInput):
    """A request that does not fit A1111's models: answered 422 with FastAPI's `detail` list."""

    code = "invalid_input"

    def __init__(self, message: str, *, loc: list[Any] | None = None, kind: str = "value_error",
                 errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.detail = errors or [{"loc": ["body", *(loc or [])], "msg": message, "type": kind}]


class JobFailed(AppError):
    """The job ran and failed (the code is the job's): A1111 answers a failed generation with a 500."""

    code = "generation_failed"
    status = 500


# Requests, as A1111's StableDiffusion*ProcessingAPI models (unknown fields are ignored, as there)


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] | None = None
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False
    denoising_strength: float | None = 0.75


class OptionsUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: str | None = None


class PngInfoRequest(BaseModel):
    image: str


@dataclass(eq=False)  # a subscriber is kept in a set, by identity
class _Waiter:
    """Subscribed to one job's topic while a synchronous call waits for it."""

    job_id: str
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        event = frames.decode(frame)
        if isinstance(event, dict) and event.get("type") in FINAL_EVENTS:
            self.done.set()

    def reset(self, topic: str, epoch: str) -> None:
        self.done.set()  # the history restarted: look at the row


@dataclass
class _CurrentJob:
    """Which job a progress poller was last found to have, and whether the queue still showed it then."""

    read_at: float
    job: GenerationJob | None
    active: bool = False


@dataclass(frozen=True)
class Submitted:
    """A job an A1111 call started, with what its answer echoes."""

    job_id: str
    request: dict[str, Any]  # the A1111 request, as its `parameters` answer
    prompt: str  # as sent, LoRA tags and all (A1111's `prompt` in `info`)
    img2img: bool


class A1111Service:
    def __init__(self, jobs: JobService, hub: Hub, db: async_sessionmaker[AsyncSession], executors: Executors):
        self._jobs = jobs
        self._hub = hub
        self._db = db
        self._executors = executors
        # user id -> (when it was looked up, the caller's current job row or None), for progress polling.
        self._current_jobs: dict[int, _CurrentJob] = {}

    # Catalogue

    def _scan_specs(self) -> list[Any]:
        """The checkpoints by name, the folder read again (blocks: call it in the I/O pool)."""
        self._jobs.kinds.registry.refresh()
        return sorted(self._jobs.kinds.registry.specs(), key=lambda spec: spec.name)

    async def _specs(self) -> list[Any]:
        return await self._executors.run_io(self._scan_specs)

    async def sd_models(self) -> list[dict[str, Any]]:
        """SDModelItem for each checkpoint the workers share."""
        registry = self._jobs.kinds.registry

        def scan() -> list[tuple[Any, str]]:  # one trip to the I/O pool: the folder, then each file's hash
            return [(spec, registry.short_hash(spec)) for spec in self._scan_specs()]

        return [{"title": f"{spec.name} [{short}]", "model_name": spec.name, "hash": short, "sha256": None,
                 "filename": str(spec.path.name), "config": None}
                for spec, short in await self._executors.run_io(scan)]

    def samplers(self) -> list[dict[str, Any]]:
        return [{"name": name, "aliases": [], "options": {}} for name in sorted(SAMPLERS)]

    def schedulers(self) -> list[dict[str, Any]]:
        return [dict(item) for item in SCHEDULERS]

    async def loras(self) -> list[dict[str, Any]]:
        names = await self._executors.run_io(self._jobs.kinds.registry.lora_names)
        return [{"name": name, "alias": name, "path": f"loras/{name}.safetensors", "metadata": {}}
                for name in sorted(names)]

    async def options(self, user: User) -> dict[str, Any]:
        """The options A1111 clients read; `sd_model_checkpoint` is this caller's default."""
        model = await self._default_model(user)
        return {"sd_model_checkpoint": model, "sd_checkpoint_hash": None, "sd_vae": "Automatic",
                "samples_format": "png", "CLIP_stop_at_last_layers": 1, "live_previews_enable": True,
                "live_previews_image_format": "webp", "show_progress_every_n_steps": 1,
                "enable_pnginfo": True, "sd_lora": "None", "eta_noise_seed_delta": 0}

    async def set_options(self, user: User, update_: OptionsUpdate) -> None:
        """Only `sd_model_checkpoint` changes anything: this caller's default model."""
        if update_.sd_model_checkpoint is None:
            return
        model = await self.resolve_model(update_.sd_model_checkpoint, loc=["sd_model_checkpoint"])
        async with self._db() as db:
            await db.execute(update(User).where(User.id == user.id).values(sdapi_model=model))
            await db.commit()

    async def _default_model(self, user: User) -> str | None:
        async with self._db() as db:
            chosen = await db.scalar(select(User.sdapi_model).where(User.id == user.id))
        names = self._jobs.kinds.registry.names()
        if chosen in names:
            return chosen
        specs = await self._specs()
        return specs[0].name if specs else None

    async def resolve_model(self, value: str, *, loc: list[Any]) -> str:
        """A checkpoint by A1111 title ("name [hash]"), file name or name."""
        name = TITLE_HASH_RE.sub("", value.strip())
        names = {spec.name for spec in await self._specs()}
        for candidate in (name, *(name[: -len(suffix)] for suffix in WEIGHT_SUFFIXES if name.endswith(suffix))):
            if candidate in names:
                return candidate
        raise SdapiInvalid(f"Model {value[:80]!r} not found; GET /sdapi/v1/sd-models lists them.", loc=loc)

    # Generation

    async def submit(self, user: User, request: Txt2ImgRequest) -> Submitted:
        """Map an A1111 request onto a job of the caller and queue it (fair queue, caps, screening)."""
        img2img = isinstance(request, Img2ImgRequest)
        _refuse_unsupported(request)
        override = request.override_settings or {}
        checkpoint = override.get("sd_model_checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise SdapiInvalid("`sd_model_checkpoint` must be a string.", loc=["override_settings",
                                                                                "sd_model_checkpoint"])
        model = (await self.resolve_model(checkpoint, loc=["override_settings", "sd_model_checkpoint"])
                 if checkpoint else await self._default_model(user))
        if model is None:
            raise SdapiInvalid("No model is installed.", loc=["override_settings", "sd_model_checkpoint"])
        prompt, loras = ((request.prompt, []) if request.disable_extra_networks else parse_loras(request.prompt))
        params: dict[str, Any] = {
            "kind": "img2img" if img2img else "txt2img", "model": model, "prompt": prompt,
            "negative_prompt": request.negative_prompt, "steps": request.steps, "guidance": request.cfg_scale,
            "width": request.width, "height": request.height, "seed": None if request.seed < 0 else request.seed,
            "sampler": sampler_for(request.sampler_name or request.sampler_index, request.scheduler),
            "batch": request.batch_size * request.n_iter, "loras": loras,
        }
        if params["batch"] > MAX_BATCH:
            raise SdapiInvalid(f"batch_size × n_iter is {params['batch']}; at most {MAX_BATCH} images a call.",
                               loc=["batch_size"])
        if isinstance(request, Img2ImgRequest):
            if not request.init_images or len(request.init_images) != 1:
                raise SdapiInvalid("Send exactly one image in `init_images`.", loc=["init_images"])
            if request.denoising_strength is None:
                raise SdapiInvalid("`denoising_strength` is required for img2img.", loc=["denoising_strength"])
            params["strength"] = request.denoising_strength
            if request.mask is not None:
                params.update(check_inpainting(request))
        # Every image of the request decoded and fitted in one trip to the CPU pool (none: no trip).
        inputs = (await self._executors.run_cpu(decode_inputs, request) if img2img or request.alwayson_scripts
                  else Inputs(image=None, mask=None, controls=[]))
        if inputs.controls:
            params["controls"] = inputs.controls
        try:
            job = await self._jobs.submit(user, params, inputs.image, mask=inputs.mask)
        except InvalidInput as exc:
            field_name = exc.data.get("field") if exc.data else None
            raise SdapiInvalid(exc.message, loc=[A1111_FIELD.get(field_name, field_name)] if field_name else [],
                               kind=exc.code) from None
        echoed = request.model_dump()
        if img2img and not echoed.get("include_init_images"):
            echoed["init_images"] = None
            echoed["mask"] = None
        return Submitted(job["id"], echoed, request.prompt, img2img)

    async def wait(self, job_id: str, cancelled: asyncio.Event) -> GenerationJob:
        """Wait until the job ends (its events, or the row now and then); `cancelled` set cancels it."""
        waiter = _Waiter(job_id)
        topic = f"job:{job_id}"
        await self._hub.subscribe(topic, waiter)
        try:
            while True:
                job = await self._jobs.records.get(job_id)
                if job is None or job.status in FINISHED:
                    assert job is not None, "a job row is never deleted once admitted"
                    return job
                stop = asyncio.ensure_future(cancelled.wait())
                done = asyncio.ensure_future(waiter.done.wait())
                await asyncio.wait([stop, done], timeout=WAIT_POLL_SECS, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                done.cancel()
                if cancelled.is_set():
                    raise asyncio.CancelledError
        finally:
            await self._hub.unsubscribe(topic, waiter)

    async def answer(self, principal: Principal, submitted: Submitted, job: GenerationJob,
                     send_images: bool) -> dict[str, Any]:
        """TextToImageResponse / ImageToImageResponse: base64 PNGs, the request echoed, `info` as JSON text."""
        if job.status == "failed":
            raise JobFailed(job.error_message or "The job failed.", code=job.error_code or "generation_failed")
        loaded = await self._jobs.records.load(job.id)
        images = loaded[1] if loaded else []
        encoded = []
        if send_images:
            for image in images:
                _digest, png = await self._jobs.image_bytes(principal, image.id, thumb=False)
                encoded.append(await self._executors.run_cpu(_b64, png))
        settings = json.loads(job.settings)
        registry = self._jobs.kinds.registry
        model_hash = None
        if job.model in registry.names():
            model_hash = await self._executors.run_io(registry.short_hash, registry.get(job.model))
        seeds = [image.seed for image in images] or [settings.get("seed", -1)]
        stopped_at = json.loads(job.timings or "{}").get("interrupted_at_step")
        count = max(1, len(images))
        info = {
            "prompt": submitted.prompt, "all_prompts": [submitted.prompt] * count,
            "negative_prompt": settings.get("negative_prompt", ""),
            "all_negative_prompts": [settings.get("negative_prompt", "")] * count,
            "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * count,
            "subseed_strength": 0, "width": settings.get("width"), "height": settings.get("height"),
            "sampler_name": settings.get("sampler"), "cfg_scale": settings.get("guidance"),
            "steps": settings.get("steps"), "batch_size": settings.get("batch", 1), "restore_faces": False,
            "face_restoration_model": None, "sd_model_name": job.model, "sd_model_hash": model_hash,
            "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": settings.get("strength") if submitted.img2img else None,
            "extra_generation_params": {}, "index_of_first_image": 0,
            "infotexts": [image.parameters for image in images], "styles": [],
            "job_timestamp": _timestamp(job.created_at), "clip_skip": 1,
            "is_using_inpainting_conditioning": False, "version": VERSION,
            "job": job.id, "interrupted": job.status == "cancelled" or stopped_at is not None,
        }
        if stopped_at is not None:  # an interrupt kept what it made: the images are of this step
            info["extra_generation_params"]["Interrupted at step"] = stopped_at
        return {"images": encoded, "parameters": submitted.request, "info": json.dumps(info)}

    async def cancel(self, user: User, job_id: str, *, keep: bool = False) -> None:
        """The caller went away (or interrupted, `keep`: what it made is kept): stop the job if it still runs."""
        try:
            await self._jobs.cancel(user, job_id, keep=keep)
        except AppError as exc:  # finished meanwhile: nothing to stop
            log.debug("sdapi cancel of %s: %s", job_id, exc.code)

    # Progress and interrupt, the caller's own

    async def _current(self, user: User) -> GenerationJob | None:
        """The caller's job that runs now, else the one that waits longest (looked up once a second)."""
        now = time.monotonic()
        cached = self._current_jobs.get(user.id)
        if cached is not None and now - cached.read_at < (ACTIVE_JOB_CACHE_SECS if cached.active
                                                           else CURRENT_JOB_CACHE_SECS):
            return cached.job
        jobs = await self._jobs.records.unfinished(user.id)
        running = [job for job in jobs if job.status == "running"]
        job = running[0] if running else (jobs[-1] if jobs else None)
        if len(self._current_jobs) >= CURRENT_JOB_CACHE_ENTRIES:
            self._current_jobs.clear()
        self._current_jobs[user.id] = _CurrentJob(now, job)
        return job

    async def progress(self, user: User, *, skip_current_image: bool) -> dict[str, Any]:
        """ProgressResponse for the caller's current job (A1111's is the server's one job)."""
        job = await self._current(user)
        state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
                 "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
        settings = json.loads(job.settings)
        total = int(settings.get("steps") or 0)
        state.update(job=job.id, job_count=1, job_timestamp=_timestamp(job.created_at), sampling_steps=total)
        # The row may be a second old; the queue is live. One round trip for all a poller is shown.
        live = await self._jobs.queue.live(job.id, preview=not skip_current_image)
        cached = self._current_jobs.get(user.id)
        if cached is not None and cached.job is job:
            cached.active = live.place is not None or live.progress is not None
        if live.progress is None and job.status == "queued":
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None,
                    "textinfo": f"Waiting in the queue: place {live.place}" if live.place else "Waiting in the queue"}
        step, total = live.progress or (0, total)
        state.update(sampling_step=step, sampling_steps=total)
        if job.started_at is None:  # the cached row is from before it started: read it again, once
            job = await self._jobs.records.get(job.id) or job
            self._current_jobs[user.id] = _CurrentJob(time.monotonic(), job, active=True)
        progress = step / total if total else 0.0
        eta = 0.0
        if step and job.started_at is not None:
            elapsed = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - job.started_at).total_seconds()
            eta = max(0.0, elapsed / step * (total - step))
        # A preview is tens of KB: its base64 takes microseconds, less than a thread hop.
        image = _b64(live.preview.image) if live.preview is not None else None
        return {"progress": round(progress, 4), "eta_relative": round(eta, 3), "state": state,
                "current_image": image, "textinfo": f"Step {step}/{total}"}

    async def interrupt(self, user: User) -> int:
        """Stop the caller's running jobs (never anyone else's) at their current step, keeping what they
        made (A1111 decodes the latents so far); how many were told to stop."""
        running = [job for job in await self._jobs.records.unfinished(user.id) if job.status == "running"]
        for job in running:
            await self.cancel(user, job.id, keep=True)
        return len(running)

    # PNG info and the host

    async def png_info(self, body: PngInfoRequest) -> dict[str, Any]:
        """PNGInfoResponse: the `parameters` text, the other text chunks, the parameters parsed."""
        items = await self._executors.run_cpu(png_text, body.image)
        info = items.pop("parameters", "")
        return {"info": info, "items": items, "parameters": parse_infotext(info) if info else {}}

    def memory(self) -> dict[str, Any]:
        """MemoryResponse for this web process's host; the GPUs are on the workers (see /api/workers)."""
        ram = {}
        try:
            with open("/proc/meminfo") as f:
                values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.count(":") == 1}
            ram = {"free": values.get("MemAvailable", 0), "used": values.get("MemTotal", 0) -
                   values.get("MemAvailable", 0), "total": values.get("MemTotal", 0)}
        except OSError as exc:
            ram = {"error": str(exc)}
        return {"ram": ram, "cuda": {"error": "The GPUs are on the workers; GET /api/workers lists them."}}

    def cmd_flags(self) -> dict[str, Any]:
        """A few of FlagsModel's fields, as they are true of this server."""
        return {"api": True, "api_auth": "<users and API tokens>", "nowebui": False, "listen": True,
                "no_half": False, "medvram": False, "lowvram": False, "xformers": False, "skip_torch_cuda_test": True,
                "ckpt_dir": None, "lora_dir": "loras", "api_log": False, "disable_safe_unpickle": False}


# Mapping helpers (pure)

# Our engine's field names -> A1111's, for the `loc` of errors that the job checks raise.
A1111_FIELD = {"guidance": "cfg_scale", "sampler": "sampler_name", "batch": "batch_size", "strength":
               "denoising_strength", "loras": "prompt", "model": "sd_model_checkpoint", "controls": "alwayson_scripts",
               "init_image": "init_images", "prompt": "prompt", "negative_prompt": "negative_prompt"}


def parse_loras(prompt: str) -> tuple[str, list[list[Any]]]:
    """The prompt without `<lora:name:weight>` tags, and the LoRAs they name."""
    loras: list[list[Any]] = []
    for match in LORA_RE.finditer(prompt):
        weight_text = (match.group(2) or "1").strip()
        try:
            weight = float(weight_text)
        except ValueError:
            raise SdapiInvalid(f"LoRA {match.group(1)!r} weight {weight_text!r} is not a number.",
                               loc=["prompt"]) from None
        loras.append([match.group(1).strip(), weight])
    cleaned = re.sub(r"\s{2,}", " ", LORA_RE.sub("", prompt)).strip().strip(",").strip()
    return cleaned, loras


def sampler_for(name: str | None, scheduler: str | None) -> str:
    """A1111's sampler (+ scheduler, since 1.9) as one of our sampler names."""
    name = (name or DEFAULT_SAMPLER).strip()
    schedule = (scheduler or "automatic").strip().lower()
    if schedule == "karras" and not name.endswith("Karras") and f"{name} Karras" in SAMPLERS:
        return f"{name} Karras"
    if name in SAMPLERS and schedule in ("automatic", "karras", ""):
        return name
    if name not in SAMPLERS:
        raise SdapiInvalid(f"Sampler {name[:60]!r} not found; GET /sdapi/v1/samplers lists them.",
                           loc=["sampler_name"])
    raise SdapiInvalid(f"Scheduler {scheduler!r} is not one of automatic, karras.", loc=["scheduler"])


def _refuse_unsupported(request: Txt2ImgRequest) -> None:
    """Features A1111 has and this engine does not: refused by name, never silently ignored."""
    refusals = [("enable_hr", request.enable_hr, "hires fix"), ("script_name", request.script_name, "scripts"),
                ("restore_faces", request.restore_faces, "face restoration"), ("tiling", request.tiling, "tiling"),
                ("refiner_checkpoint", request.refiner_checkpoint, "refiners"),
                ("styles", request.styles, "saved styles"), ("subseed_strength", request.subseed_strength,
                                                             "variation seeds")]
    if isinstance(request, Img2ImgRequest):
        refusals.append(("latent_mask", request.latent_mask, "separate latent masks"))
    for name, value, what in refusals:
        if value:
            raise SdapiInvalid(f"`{name}`: {what} are not supported by this server.", loc=[name],
                               kind="value_error.unsupported")
    unknown = set(request.alwayson_scripts) - {"controlnet", "ControlNet"}
    if unknown:
        raise SdapiInvalid(f"always on script {sorted(unknown)[0]} not found", loc=["alwayson_scripts"])


@dataclass(frozen=True)
class Inputs:
    """A request's images, decoded and fitted: what the job stores."""

    image: bytes | None  # the init image (fitted to the size), else the image ControlNet units follow
    mask: bytes | None  # img2img's mask as the engine takes it: white repaints, at the init image's size
    controls: list[dict[str, Any]]


def decode_inputs(request: Txt2ImgRequest) -> Inputs:
    """Every image of a request decoded, checked and fitted (CPU pool, one trip for them all)."""
    image = mask = None
    only_masked = isinstance(request, Img2ImgRequest) and request.mask is not None and request.inpaint_full_res
    if isinstance(request, Img2ImgRequest):
        assert request.init_images
        data = decode_image(request.init_images[0], ["init_images", 0])
        # "Only masked" cuts its region out of the whole init image (the engine does): it is not fitted here.
        resize_mode = 0 if only_masked else request.resize_mode
        if request.mask is not None:
            blur = request.mask_blur
            mask = prepare_mask(request.mask, data, invert=bool(request.inpainting_mask_invert),
                                blur=(request.mask_blur_x, request.mask_blur_y) if blur is None else (blur, blur),
                                resize_mode=resize_mode, width=request.width, height=request.height)
        image = _pil_guard(reframe, ["init_images", 0], data, resize_mode, request.width, request.height)
    controls, control_image = controlnet_units(request.alwayson_scripts, image)
    if controls and only_masked:  # the units would follow the whole picture, the denoising a cut-out of it
        raise SdapiInvalid("`inpaint_full_res`: ControlNet units with \"only masked\" inpainting are not supported "
                           "here; send `inpaint_full_res: false`.", loc=["inpaint_full_res"],
                           kind="value_error.unsupported")
    return Inputs(image=(image or control_image) if controls else image, mask=mask, controls=controls)


def check_inpainting(request: Img2ImgRequest) -> dict[str, Any]:
    """The mask settings, checked (422 naming the field); the job's inpainting fields."""
    if not 0 <= request.inpaint_full_res_padding <= MAX_INPAINT_PADDING_PX:
        raise SdapiInvalid(f"`inpaint_full_res_padding` must be 0..{MAX_INPAINT_PADDING_PX} px.",
                           loc=["inpaint_full_res_padding"])
    if not request.mask_round:
        raise SdapiInvalid("`mask_round`: an unrounded latent mask is not supported by this server; send true.",
                           loc=["mask_round"], kind="value_error.unsupported")
    if request.inpainting_mask_invert not in (0, 1):
        raise SdapiInvalid("`inpainting_mask_invert` must be 0 (inpaint masked) or 1 (inpaint not masked).",
                           loc=["inpainting_mask_invert"])
    if request.inpainting_fill not in range(len(INPAINTING_FILLS)):
        raise SdapiInvalid(f"`inpainting_fill` must be 0..{len(INPAINTING_FILLS) - 1} "
                           f"({', '.join(INPAINTING_FILLS)}).", loc=["inpainting_fill"])
    for name in ("mask_blur", "mask_blur_x", "mask_blur_y"):
        value = getattr(request, name)
        if value is not None and not 0 <= value <= MAX_MASK_BLUR_PX:
            raise SdapiInvalid(f"`{name}` must be 0..{MAX_MASK_BLUR_PX} px.", loc=[name])
    return {"inpainting_fill": request.inpainting_fill, "inpaint_full_res": request.inpaint_full_res,
            "inpaint_full_res_padding": request.inpaint_full_res_padding}


def prepare_mask(value: Any, init_image: bytes, *, invert: bool, blur: tuple[int, int], resize_mode: int,
                 width: int, height: int) -> bytes:
    """A1111's mask as the engine takes it: grey PNG, white repaints, feathered, aligned with the init image.

    As A1111: a mask with transparency is its alpha (opaque = repaint), else its brightness;
    it is stretched to the init image, blurred there (Gaussian, sigma = the blur in px) and
    fitted by the same resize mode as the init image, so the two stay aligned.
    """
    data = decode_image(value, ["mask"])

    def make() -> bytes:
        with Image.open(io.BytesIO(data)) as opened:
            mask = ImageOps.exif_transpose(opened)
            if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
                mask = mask.getchannel("A").point(lambda alpha: 255 if alpha > 128 else 0)
            mask = mask.convert("L")
        if invert:
            mask = ImageOps.invert(mask)
        size = upright_size(init_image)
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.BILINEAR)
        if any(blur):
            mask = mask.filter(ImageFilter.GaussianBlur(blur))
        mask = _fit(mask, resize_mode, width, height)
        out = io.BytesIO()
        mask.save(out, format="PNG")
        return out.getvalue()

    return _pil_guard(make, ["mask"])


def _pil_guard(work: Any, loc: list[Any], *args: Any) -> Any:
    """Run PIL work on an image that passed the header check; a broken body is the caller's 422."""
    try:
        return work(*args)
    except SdapiInvalid:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SdapiInvalid(f"The image cannot be read: {exc.__class__.__name__}.", loc=loc,
                           kind="value_error.image") from None


def decode_image(value: Any, loc: list[Any]) -> bytes:
    """Base64 (or a data: URL) that must hold an image this server can read."""
    if not isinstance(value, str):
        raise SdapiInvalid("The image must be a base64 string.", loc=loc)
    try:
        data = base64.b64decode(value.split(",", 1)[-1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise SdapiInvalid("The image is not valid base64.", loc=loc, kind="value_error.base64") from None
    try:
        probe_image(data)
    except InvalidRequest as exc:
        raise SdapiInvalid(f"The image cannot be read: {exc}", loc=loc, kind="value_error.image") from None
    return data


def controlnet_units(scripts: dict[str, Any], init_image: bytes | None) -> tuple[list[dict[str, Any]], bytes | None]:
    """sd-webui-controlnet's `alwayson_scripts.controlnet.args` as our unit settings, and the image they follow.

    A job has one input image: every enabled unit must follow the same image (in img2img, the
    init image, which is also what a unit without an image follows, as in the extension).
    """
    script = scripts.get("controlnet") or scripts.get("ControlNet")
    if not script:
        return [], None
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list):
        raise SdapiInvalid("`alwayson_scripts.controlnet.args` must be a list of units.",
                           loc=["alwayson_scripts", "controlnet", "args"])
    units: list[dict[str, Any]] = []
    image: bytes | None = None
    for index, arg in enumerate(args):
        loc = ["alwayson_scripts", "controlnet", "args", index]
        if not isinstance(arg, dict):
            raise SdapiInvalid("A ControlNet unit must be an object.", loc=loc)
        if not arg.get("enabled", True):
            continue
        module = str(arg.get("module", "none")).lower()
        if module not in CONTROLNET_MODULES:
            raise SdapiInvalid(f"ControlNet module {module[:40]!r} is not one of {', '.join(CONTROLNET_MODULES)}.",
                               loc=[*loc, "module"])
        raw = arg.get("image", arg.get("input_image"))
        if isinstance(raw, dict):
            raw = raw.get("image")
        unit_image = decode_image(raw, [*loc, "image"]) if raw else init_image
        if unit_image is None:
            raise SdapiInvalid("A ControlNet unit needs an `image` in txt2img.", loc=[*loc, "image"])
        if image is not None and unit_image != image or (init_image is not None and unit_image != init_image):
            raise SdapiInvalid("All ControlNet units (and the init image) must use the same image here.",
                               loc=[*loc, "image"])
        image = unit_image
        unit: dict[str, Any] = {
            "model": TITLE_HASH_RE.sub("", str(arg.get("model", ""))).strip(),
            "preprocessor": CONTROLNET_MODULES[module], "scale": arg.get("weight", 1.0),
            "start": arg.get("guidance_start", 0.0), "end": arg.get("guidance_end", 1.0),
        }
        if unit["preprocessor"] == "canny":
            unit["low_threshold"] = int(arg.get("threshold_a", 100))
            unit["high_threshold"] = int(arg.get("threshold_b", 200))
        units.append(unit)
    return units, image


def reframe(data: bytes, resize_mode: int, width: int, height: int) -> bytes:
    """An init image fitted to width×height as A1111's resize modes do (0 stretch, 1 crop, 2 fill, 3 stretch)."""
    if resize_mode == 0 or resize_mode == 3:
        return data  # the engine stretches the init image to the requested size itself
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    out = io.BytesIO()
    _fit(image, resize_mode, width, height).save(out, format="PNG")
    return out.getvalue()


def _fit(image: Image.Image, resize_mode: int, width: int, height: int) -> Image.Image:
    """`reframe` on a decoded image (the init image, or its mask, which must stay aligned with it)."""
    if resize_mode == 0 or resize_mode == 3:
        return image
    if resize_mode not in (1, 2):
        raise SdapiInvalid(f"`resize_mode` must be 0..3 but is {resize_mode}.", loc=["resize_mode"])
    if resize_mode == 1:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
    # A1111 fills with the stretched edges; a blurred stretch of the picture itself reads the same.
    canvas = image.resize((width, height), Image.Resampling.BILINEAR)
    canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return canvas


def png_text(value: Any) -> dict[str, str]:
    """The text chunks of a base64 image (PNG tEXt/iTXt; other formats have none here)."""
    data = decode_image(value, ["image"])
    with Image.open(io.BytesIO(data)) as image:
        if isinstance(image, PngImagePlugin.PngImageFile):
            return {str(key): str(value) for key, value in image.text.items()}
        return {str(key): str(value) for key, value in image.info.items() if isinstance(value, str)}


INFOTEXT_PAIR_RE = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> dict[str, Any]:
    """A1111's `parse_generation_parameters`: prompt, negative prompt and the `Key: value` line."""
    lines = text.strip().split("\n")
    last = lines[-1] if len(INFOTEXT_PAIR_RE.findall(lines[-1])) >= 3 else ""
    body = lines[:-1] if last else lines
    prompt, negative, into_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            into_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if into_negative else prompt).append(line)
    result: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in INFOTEXT_PAIR_RE.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        size = re.fullmatch(r"(\d+)x(\d+)", value)
        if size:
            result[f"{key.strip()}-1"], result[f"{key.strip()}-2"] = size.group(1), size.group(2)
        else:
            result[key.strip()] = value
    result.setdefault("Clip skip", "1")
    return result


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _timestamp(value: dt.datetime | None) -> str:
    return value.strftime("%Y%m%d%H%M%S") if value else "0"
