"""The engine: one worker thread per CUDA device (one CPU worker without CUDA).

The event loop only submits and receives. `Engine.submit()` validates the request (so a
bad one never reaches a worker), queues it and returns a `Job`: awaitable for the
result, cancellable, and reporting events through `on_event`. Workers run torch; they
reach the loop only through `loop.call_soon_threadsafe`, so callbacks and futures are
touched on the loop thread alone. A job that raises fails by itself: the worker logs
it, reports `error`, and takes the next job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ThreadTimeout
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from diffusers import AutoencoderTiny

from inference.caches import (
    DEFAULT_CACHE_TTL_SECS,
    DEFAULT_CONTROL_CACHE_ENTRIES,
    DEFAULT_LATENT_CACHE_ENTRIES,
    DEFAULT_TEXT_CACHE_ENTRIES,
    TTLCache,
)
from inference.control import ControlImage, cache_size
from inference.errors import GenerationCancelled, GenerationFailed, InferenceError
from inference.events import (
    Cancelled,
    ControlImages,
    ControlOut,
    Done,
    Failed,
    GeneratedImage,
    JobEvent,
    JobResult,
    Preview,
    Progress,
    Started,
)
from inference.images import a1111_parameters, encode_png
from inference.model_cache import ModelCache, default_budgets
from inference.models import ModelRegistry, ModelSpec
from inference.pipelines import (
    CONTROLNET_CACHE_PREFIX,
    Caches,
    GenerationOutput,
    LoadedModel,
    StepHooks,
    controlnet_cache_key,
    generate,
    load_controlnet,
    load_model,
    resolve_size,
)
from inference.previews import (
    DEFAULT_PREVIEW_FORMAT,
    DEFAULT_PREVIEW_FPS,
    DEFAULT_PREVIEW_MAX_SIDE_PX,
    LinearPreviewer,
    PreviewEncoder,
    PreviewFrame,
    PreviewThrottle,
    TaesdPreviewer,
)
from inference.requests import ControlUnit, GenerationRequest
from inference.screening import PromptScreen

log = logging.getLogger(__name__)

EventCallback = Callable[[JobEvent], None]
PreviewMethod = Literal["auto", "linear", "taesd", "none"]
TAESD_FOLDER = {"sd1": "taesd", "sd2": "taesd", "sdxl": "taesdxl"}
MODEL_HASH_WAIT_SECS = 30.0  # past this the PNG goes out without "Model hash" rather than wait
_STOP = object()


@dataclass
class EngineConfig:
    """Engine settings; None means "derive from the device"."""

    devices: list[str] | None = None
    device_budget_bytes: int | None = None
    host_budget_bytes: int | None = None
    dtype: torch.dtype | None = None  # float16 on CUDA, float32 on the CPU
    preview_fps: float = DEFAULT_PREVIEW_FPS  # per job; 0 = every step, none dropped (tests, benchmarks)
    preview_format: str = DEFAULT_PREVIEW_FORMAT
    preview_max_side: int = DEFAULT_PREVIEW_MAX_SIDE_PX
    preview_method: PreviewMethod = "auto"  # auto = TAESD when its weights are local, else linear
    text_cache_entries: int = DEFAULT_TEXT_CACHE_ENTRIES
    latent_cache_entries: int = DEFAULT_LATENT_CACHE_ENTRIES
    control_cache_entries: int = DEFAULT_CONTROL_CACHE_ENTRIES  # decoded photos + control images
    cache_ttl_s: float = DEFAULT_CACHE_TTL_SECS
    # torch's intra-op threads on a CPU-only host; None = one fewer than the cores, so the event
    # loop and the preview encoder keep a core (with every core, torch's spinning threads stall
    # whenever anything else runs: 10 tiny steps went from 0.14 s to 4.9 s beside one busy process).
    cpu_threads: int | None = None


def detect_devices() -> list[str]:
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


class Job:
    """A submitted request. `await job` gives the JobResult or raises GenerationFailed/Cancelled.

    Who touches what (three threads meet here):
    - set at construction, read anywhere: `id`, `request`, `loop`, `submitted_at`;
    - the loop thread only: `future` (the worker reaches it through `settle`, which hops to the loop);
    - `_lock` guards `state` and the moment of a cancel (`cancel_requested_at`): `cancel()` runs on
      the loop, `start()`/`finish()` on the worker;
    - `_cancelled` (an Event) is how the worker sees a cancel, once per step, without the lock;
    - the worker thread only: `steps_done` (read elsewhere as a plain int) and `throttle`;
    - `preview_in_flight` (an Event): set by the worker when it hands a frame to the encoder, cleared by
      the encoder thread when the frame is out, so the worker never queues a second one behind it.
    """

    def __init__(self, job_id: str, request: GenerationRequest, loop: asyncio.AbstractEventLoop,
                 on_event: EventCallback | None) -> None:
        self.id = job_id
        self.request = request
        self.loop = loop
        self.future: asyncio.Future[JobResult] = loop.create_future()
        # Nobody may await the future (event-only callers); retrieving the exception here
        # keeps asyncio from logging "exception was never retrieved" for those.
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._on_event = on_event
        self._lock = threading.Lock()
        self.state: Literal["queued", "running", "finished"] = "queued"
        self.steps_done = 0
        self.cancel_requested_at: int | None = None
        self.keep_partial = False  # the cancel keeps the steps run (decoded as a finish): set with it, under _lock
        self._cancelled = threading.Event()
        self.submitted_at = time.perf_counter()
        self.preview_in_flight = threading.Event()
        self.throttle: PreviewThrottle | None = None

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.future.__await__()

    @property
    def cancel_requested(self) -> bool:
        return self._cancelled.is_set()

    @property
    def keeps_partial(self) -> bool:
        """Stopped to keep its images, and asked after a step had run (before one, there is nothing to keep)."""
        return self.keep_partial and bool(self.cancel_requested_at)

    def cancel(self, keep: bool = False) -> bool:
        """Ask the job to stop. A queued job is cancelled at once; a running one within one step.

        `keep`: the running job's latents so far are decoded and it finishes as done (A1111's interrupt).
        A later plain cancel still drops them.
        """
        with self._lock:
            if self.state == "finished":
                return False
            if self._cancelled.is_set():
                self.keep_partial = self.keep_partial and keep
                return False
            self.keep_partial = keep
            self.cancel_requested_at = self.steps_done
            self._cancelled.set()
            if self.state == "queued":
                self.state = "finished"  # the worker will skip it
                self.post(Cancelled(self.id, step=0, requested_at_step=0))
                self.settle(exc=GenerationCancelled(f"job {self.id} was cancelled before it started"))
        return True

    def start(self) -> bool:
        with self._lock:
            if self.state != "queued":
                return False
            self.state = "running"
            return True

    def finish(self) -> None:
        with self._lock:
            self.state = "finished"

    # Thread crossings: the only way a worker reaches the loop.
    def post(self, event: JobEvent) -> None:
        if self._on_event is None:
            return
        with suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self.loop.call_soon_threadsafe(self._on_event, event)

    def settle(self, result: JobResult | None = None, exc: BaseException | None = None) -> None:
        def resolve() -> None:
            if self.future.done():
                return
            if exc is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]

        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(resolve)


@dataclass
class _Counters:
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    oom_retries: int = 0
    steps: int = 0
    denoise_seconds: float = 0.0
    preview_seconds: float = 0.0  # worker-side preview cost (latent -> RGB), for the benchmark
    previews_sent: int = 0
    previews_dropped: int = 0
    vae_upcasts: int = 0


class Engine:
    """Runs GenerationRequests on worker threads; see the module docstring."""

    def __init__(
        self,
        registry: ModelRegistry,
        config: EngineConfig | None = None,
        *,
        screen: PromptScreen | None = None,
        loader: Callable[[ModelSpec, torch.dtype], LoadedModel] | None = None,
    ) -> None:
        self.registry = registry
        self.config = config or EngineConfig()
        self.screen = screen
        self._loader = loader or (lambda spec, dtype: load_model(spec, dtype=dtype))
        self.devices = self.config.devices or detect_devices()
        self.text_cache: TTLCache = TTLCache(self.config.text_cache_entries, ttl_s=self.config.cache_ttl_s)
        self.latent_cache: TTLCache = TTLCache(self.config.latent_cache_entries, ttl_s=self.config.cache_ttl_s)
        self.control_cache: TTLCache = TTLCache(self.config.control_cache_entries, ttl_s=self.config.cache_ttl_s,
                                                size_of=cache_size)
        self.encoder = PreviewEncoder()
        self.counters = _Counters()
        self._counter_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="va-model-hash")
        self._hash_lock = threading.Lock()  # guards _hashes (the counters have their own lock)
        self._hashes: dict[str, ThreadFuture[str]] = {}
        self._ids = itertools.count(1)
        self.workers = [_Worker(self, device) for device in self.devices]
        self._started = False

    # ---- loop side ------------------------------------------------------------------

    def start(self) -> "Engine":
        if not self._started:
            if self.devices == ["cpu"]:
                torch.set_num_threads(self.config.cpu_threads or max(1, (os.cpu_count() or 2) - 1))
            for worker in self.workers:
                worker.thread.start()
            self._started = True
        return self

    def validate(self, request: GenerationRequest) -> GenerationRequest:
        """Refuse a bad request (InvalidRequest) or return it with a concrete seed."""
        names = self.registry.names()
        controlnets = self.registry.controlnet_families()
        if request.model not in names or any(isinstance(unit, ControlUnit) and unit.model not in controlnets
                                             for unit in request.controls):
            names = frozenset(self.registry.refresh())  # a model may have been added since the scan
            controlnets = self.registry.controlnet_families()
        family = self.registry.get(request.model).family if request.model in names else None
        request.validate(names, self.screen, self.registry.lora_names() if request.loras else (),
                         model_family=family, known_controlnets=controlnets)
        return request.with_seed()

    def submit(self, request: GenerationRequest, on_event: EventCallback | None = None, *,
               job_id: str | None = None) -> Job:
        """Validate and queue a request (call on the event loop). Raises InvalidRequest."""
        request = self.validate(request)
        job = Job(job_id or uuid.uuid4().hex, request, asyncio.get_running_loop(), on_event)
        self._queue.put(job)
        return job

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        """Plain numbers for /metrics: jobs, steps, previews, both small caches, each model cache."""
        with self._counter_lock:
            counters = dict(vars(self.counters))
        return {
            "queue_depth": self.queue_depth,
            "jobs": counters,
            "preview_encode_seconds": self.encoder.encode_seconds,
            "previews_encoded": self.encoder.encoded,
            "text_cache": self.text_cache.stats(),
            "latent_cache": self.latent_cache.stats(),
            "control_cache": self.control_cache.stats(),
            "model_caches": [worker.cache.stats() for worker in self.workers],
        }

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers after the jobs already running (blocking; see `aclose`)."""
        for _ in self.workers:
            self._queue.put(_STOP)
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout)
        self.encoder.close()
        self._hash_pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self, timeout: float = 30.0) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    # ---- worker side helpers ----------------------------------------------------------

    def count(self, **deltas: float) -> None:
        """Add to the counters (any thread)."""
        with self._counter_lock:
            for name, delta in deltas.items():
                setattr(self.counters, name, getattr(self.counters, name) + delta)

    def load(self, name: str, dtype: torch.dtype) -> LoadedModel:
        """Read a model from disk (a worker thread, for its cache)."""
        return self._loader(self.registry.get(name), dtype)

    def next_job(self) -> Any:
        """The next submitted job, or the stop sentinel (a worker thread; blocks)."""
        return self._queue.get()

    def model_hash(self, spec: ModelSpec) -> ThreadFuture[str]:
        """The AutoV2 hash, computed once per file version on a background thread."""
        with self._hash_lock:
            future = self._hashes.get(spec.fingerprint)
            if future is None:
                future = self._hashes[spec.fingerprint] = self._hash_pool.submit(self.registry.short_hash, spec)
            return future


class _Worker:
    """One thread, one device, one model cache."""

    def __init__(self, engine: Engine, device: str) -> None:
        self.engine = engine
        self.device = device
        config = engine.config
        self.dtype = config.dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        default_device, default_host = default_budgets(device, len(engine.devices))
        self.cache = ModelCache(
            self._load,
            device=device,
            device_budget_bytes=config.device_budget_bytes if config.device_budget_bytes is not None else default_device,
            host_budget_bytes=config.host_budget_bytes if config.host_budget_bytes is not None else default_host,
            size_of=lambda model: model.nbytes,
            move=lambda model, where: model.to(where),
        )
        self._previewers: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._serve, name=f"va-gpu-{device}", daemon=True)

    def _load(self, name: str) -> Any:
        if name.startswith(CONTROLNET_CACHE_PREFIX):
            return load_controlnet(self.engine.registry.controlnet(name[len(CONTROLNET_CACHE_PREFIX):]), dtype=self.dtype)
        return self.engine.load(name, self.dtype)

    def _serve(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(self.device))
        while True:
            job = self.engine.next_job()
            if job is _STOP:
                return
            try:
                self._run(job)
            except BaseException:  # the thread must outlive any job
                log.exception("worker %s: unexpected failure around job %s", self.device, job.id)

    def _run(self, job: Job) -> None:
        if not job.start():
            return  # cancelled while queued; already reported
        engine = self.engine
        req = job.request
        job.post(Started(job.id, model=req.model))
        timings: dict[str, float] = {"queued_s": time.perf_counter() - job.submitted_at}
        started = time.perf_counter()
        try:
            output, loaded, load_s = self._generate_with_oom_retry(job)
        except InferenceError as exc:
            self._fail(job, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("job %s failed on %s", job.id, self.device)
            self._fail(job, "generation_failed", f"{exc.__class__.__name__}: {exc}"[:500])
            return
        engine.count(steps=output.steps_run, denoise_seconds=output.timings.get("denoise_s", 0.0),
                      vae_upcasts=int(output.vae_upcast))
        if output.interrupted and not output.images:
            job.finish()
            engine.count(cancelled=1)
            job.post(Cancelled(job.id, step=output.steps_run, requested_at_step=job.cancel_requested_at or 0))
            job.settle(exc=GenerationCancelled(f"job {job.id} was cancelled at step {output.steps_run}"))
            return
        timings.update(output.timings)
        if output.interrupted:  # stopped early, kept: the images are of this step (of total_steps)
            timings["interrupted_at_step"] = output.steps_run
        timings["load_s"] = load_s
        timings["run_s"] = time.perf_counter() - started
        try:
            model_hash: str | None = engine.model_hash(loaded.spec).result(timeout=MODEL_HASH_WAIT_SECS)
        except (ThreadTimeout, OSError):
            model_hash = None
        # PNG encoding happens on the encoder thread, after this job's last preview.
        engine.encoder.call(lambda: self._finish(job, loaded.spec, output, model_hash, timings))

    def _generate_with_oom_retry(self, job: Job) -> tuple[GenerationOutput, LoadedModel, float]:
        hooks = StepHooks(on_step=lambda step, total, x0: self._on_step(job, step, total, x0),
                          should_stop=lambda: job.cancel_requested, keep_partial=lambda: job.keeps_partial,
                          on_control=lambda images: job.post(ControlImages(job.id, images=_control_out(job, images))))
        engine = self.engine
        req = job.request
        controlnet_names = list(dict.fromkeys(unit.model for unit in req.controls))
        caches = Caches(text=engine.text_cache, latent=engine.latent_cache, control=engine.control_cache)
        for attempt in (1, 2):
            loads_before, load_seconds_before = self.cache.loads, self.cache.load_seconds
            try:
                # Every module the job uses is pinned until it ends: the model first, then its ControlNets.
                with ExitStack() as pins:
                    loaded = pins.enter_context(self.cache.use(req.model))
                    controlnets = {name: pins.enter_context(self.cache.use(controlnet_cache_key(name)))
                                   for name in controlnet_names}
                    load_s = self.cache.load_seconds - load_seconds_before if self.cache.loads > loads_before else 0.0
                    lora_paths = {name: engine.registry.lora_path(name) for name, _ in req.loras}
                    output = generate(loaded, req, device=self.device, hooks=hooks, caches=caches,
                                      lora_paths=lora_paths, controlnets=controlnets)
                    return output, loaded, load_s
            except torch.OutOfMemoryError:
                if attempt == 2:
                    raise GenerationFailed(
                        f"out of memory on {self.device} even after evicting every other model", code="out_of_memory"
                    ) from None
                # The job's own modules stay for the retry; everything else unpinned goes.
                keep = {req.model, *(controlnet_cache_key(name) for name in controlnet_names)}
                evicted = self.cache.evict_unpinned(keep=keep)
                self.engine.count(oom_retries=1)
                log.warning("job %s: out of memory on %s; evicted %d model(s), retrying once",
                            job.id, self.device, evicted)
        raise AssertionError("unreachable")

    def _fail(self, job: Job, code: str, message: str) -> None:
        job.finish()
        self.engine.count(failed=1)
        job.post(Failed(job.id, code=code, message=message))
        job.settle(exc=GenerationFailed(message, code=code))

    # ---- per step (worker thread) -------------------------------------------------------

    def _on_step(self, job: Job, step: int, total: int, x0: torch.Tensor) -> None:
        job.steps_done = step
        stepped_at = time.time()
        job.post(Progress(job.id, step=step, total=total, at=stepped_at))
        engine = self.engine
        config = engine.config
        previewer = self._previewer(job)
        if previewer is None:
            return
        if job.throttle is None:
            job.throttle = PreviewThrottle(config.preview_fps)
        last = step >= total
        busy = job.preview_in_flight.is_set() and not last and config.preview_fps > 0
        if busy or not job.throttle.admit(step, total):
            engine.count(previews_dropped=1)  # dropped, never queued: the GPU does not wait
            return
        started = time.perf_counter()
        rgb = previewer(x0)
        engine.count(preview_seconds=time.perf_counter() - started, previews_sent=1)
        job.preview_in_flight.set()

        def deliver(step_: int, total_: int, mime: str, data: bytes) -> None:
            job.post(Preview(job.id, step=step_, total=total_, mime=mime, image=data, at=stepped_at))

        def done() -> None:
            job.preview_in_flight.clear()

        engine.encoder.submit_frame(
            PreviewFrame(step, total, rgb, deliver, max_side=config.preview_max_side, fmt=config.preview_format),
            done=done,
        )

    def _previewer(self, job: Job) -> Any:
        method = self.engine.config.preview_method
        if method == "none":
            return None
        spec = self.engine.registry.get(job.request.model)
        family = spec.family
        key = f"{method}:{family}"
        if key not in self._previewers:
            self._previewers[key] = self._make_previewer(method, family)
        return self._previewers[key]

    def _make_previewer(self, method: str, family: str) -> Any:
        folder = Path(self.engine.registry.models_dir) / TAESD_FOLDER[family]
        if method in ("auto", "taesd") and (folder / "config.json").exists():
            try:
                decoder = AutoencoderTiny.from_pretrained(str(folder), use_safetensors=True, local_files_only=True)
                return TaesdPreviewer(decoder.to(self.device, self.dtype).eval())
            except (OSError, ValueError) as exc:
                log.warning("TAESD at %s unusable (%s); using the linear preview", folder, exc)
        return LinearPreviewer(family)

    # ---- encoder thread -------------------------------------------------------------------

    def _finish(self, job: Job, spec: ModelSpec, output: GenerationOutput, model_hash: str | None,
                timings: dict[str, float]) -> None:
        req = job.request
        try:
            width, height = resolve_size(spec, req)
            images = []
            for image, seed in zip(output.images, output.seeds):
                parameters = a1111_parameters(
                    prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps, sampler=req.sampler,
                    guidance=req.guidance, seed=seed, width=width, height=height, model=spec.name,
                    model_hash=model_hash, strength=req.strength if req.kind == "img2img" else None,
                    clip_skip=req.clip_skip, controls=[unit.settings() for unit in req.controls],
                )
                images.append(GeneratedImage(encode_png(image, parameters), image.width, image.height, seed, parameters))
            timings["total_s"] = time.perf_counter() - job.submitted_at
            result = JobResult(job.id, spec.name, images, timings,
                               control_images=_control_out(job, output.control_images))
        except Exception as exc:
            log.exception("job %s: encoding the result failed", job.id)
            self._fail(job, "encode_failed", f"{exc.__class__.__name__}: {exc}")
            return
        job.finish()
        self.engine.count(done=1)
        job.post(Done(job.id, result=result))
        job.settle(result=result)


def _control_out(job: Job, images: list[ControlImage]) -> list[ControlOut]:
    return [ControlOut(unit=index, model=unit.model, preprocessor=unit.preprocessor, png=image.png,
                       width=image.rgb.shape[1], height=image.rgb.shape[0])
            for index, (unit, image) in enumerate(zip(job.request.controls, images))]
