"""Load Stable Diffusion pipelines from local disk and run one generation on them.

Everything here runs on an engine worker thread. Loading reads safetensors only
(`use_safetensors=True`, mmap) and never touches a hub (`local_files_only=True`).
A generation asks the pipeline for latents (`output_type="latent"`) and decodes them
itself, so it can (a) skip the decode when the job was cancelled and (b) catch the
half-precision VAE overflow that turns images black or into colour blocks, upcast the
VAE to float32 and decode again.

With ControlNet units, a ControlNet pipeline of the right family and kind is put together
for the job from the cached model's own modules and the cached ControlNet modules (no
weights are copied), and dropped after it, so nothing keeps an evicted module alive.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image

from inference.caches import TTLCache, to_cpu
from inference.construction import construction_lock
from inference.control import ControlImage, PhotoSource
from inference.errors import GenerationFailed, ModelLoadError
from inference.images import upright_size
from inference.inpaint import FILL, LatentMask, Region, fill_masked
from inference.models import ModelSpec
from inference.previews import X0Tap
from inference.requests import ControlUnit, GenerationRequest
from inference.samplers import make_scheduler
from inference.shared_tokenizers import shared_tokenizers

log = logging.getLogger(__name__)

# The tokenizer components of each family's pipelines (CLIP's BPE), shared across checkpoints.
TOKENIZERS = {"sd1": ("tokenizer",), "sd2": ("tokenizer",), "sdxl": ("tokenizer", "tokenizer_2")}
TXT2IMG_CLASS = {"sd1": StableDiffusionPipeline, "sd2": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
IMG2IMG_CLASS = {
    "sd1": StableDiffusionImg2ImgPipeline,
    "sd2": StableDiffusionImg2ImgPipeline,
    "sdxl": StableDiffusionXLImg2ImgPipeline,
}
# (family, kind) -> the ControlNet variant of the pipeline
CONTROLNET_CLASS = {
    ("sd1", "txt2img"): StableDiffusionControlNetPipeline,
    ("sd2", "txt2img"): StableDiffusionControlNetPipeline,
    ("sdxl", "txt2img"): StableDiffusionXLControlNetPipeline,
    ("sd1", "img2img"): StableDiffusionControlNetImg2ImgPipeline,
    ("sd2", "img2img"): StableDiffusionControlNetImg2ImgPipeline,
    ("sdxl", "img2img"): StableDiffusionXLControlNetImg2ImgPipeline,
}
CONTROLNET_CACHE_PREFIX = "controlnet:"  # model-cache key of a ControlNet, beside the checkpoints' names
# A decoded image whose pixels spread less than this (on the -1..1 scale) is a flat
# colour block: the signature of a float16 VAE overflow rather than of any real image.
FLAT_IMAGE_STD = 1e-3


def module_bytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules (or of one module)."""
    modules = [pipe] if isinstance(pipe, torch.nn.Module) else list(pipe.components.values())
    total = 0
    for component in modules:
        if isinstance(component, torch.nn.Module):
            for tensor in list(component.parameters()) + list(component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass
class LoadedModel:
    """A model's txt2img and img2img pipelines (sharing one set of modules) and facts about it."""

    spec: ModelSpec
    txt2img: Any
    img2img: Any
    scheduler_config: dict[str, Any]
    nbytes: int
    device: str = "cpu"
    vae_needs_float32: bool = False  # learned after the first overflow; later decodes go straight to fp32
    # Held while a prompt is encoded: the tokenizers may be shared with other models (shared_tokenizers.py).
    prompt_lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, device: str) -> None:
        """Move every module (both pipelines share them) to `device`."""
        self.txt2img.to(device)
        self.device = device

    @property
    def family(self) -> str:
        return self.spec.family


def load_model(spec: ModelSpec, *, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Read a model from disk into host memory (the cache moves it to the device)."""
    cls = TXT2IMG_CLASS[spec.family]
    extra: dict[str, Any] = {}
    if cls is StableDiffusionPipeline:
        # Prompts are screened before they reach a worker; the CLIP safety checker is a
        # 1.2 GB model of its own and is not part of our deployment.
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        with construction_lock:
            root = spec.path if spec.layout == "diffusers" else spec.config_dir
            tokenizers = shared_tokenizers(root, TOKENIZERS[spec.family]) if root is not None else None
            if tokenizers is not None:
                extra.update(tokenizers.components)
            if spec.layout == "diffusers":
                pipe = cls.from_pretrained(
                    str(spec.path), dtype=dtype, use_safetensors=True, local_files_only=True, **extra
                )
            else:
                pipe = cls.from_single_file(
                    str(spec.path), config=str(spec.config_dir), dtype=dtype, local_files_only=True, **extra
                )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load model {spec.name!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    shared = {k: v for k, v in pipe.components.items() if k in _img2img_keys(spec)}
    if "requires_safety_checker" in extra:
        shared["requires_safety_checker"] = False
    img2img = IMG2IMG_CLASS[spec.family](**shared)
    img2img.set_progress_bar_config(disable=True)
    return LoadedModel(
        spec=spec,
        txt2img=pipe,
        img2img=img2img,
        scheduler_config=dict(pipe.scheduler.config),
        nbytes=module_bytes(pipe),
        prompt_lock=tokenizers.lock if tokenizers is not None else threading.Lock(),
    )


def _img2img_keys(spec: ModelSpec) -> set[str]:
    expected, _ = IMG2IMG_CLASS[spec.family]._get_signature_keys(IMG2IMG_CLASS[spec.family])
    return set(expected)


@dataclass
class LoadedControlNet:
    """A ControlNet's module, held by the model cache like a checkpoint (its own entry and bytes)."""

    spec: ModelSpec
    module: ControlNetModel
    nbytes: int
    device: str = "cpu"

    def to(self, device: str) -> None:
        self.module.to(device)
        self.device = device

    @property
    def family(self) -> str:
        return self.spec.family


def controlnet_cache_key(name: str) -> str:
    return CONTROLNET_CACHE_PREFIX + name


def load_controlnet(spec: ModelSpec, *, dtype: torch.dtype = torch.float32) -> LoadedControlNet:
    """Read a ControlNet from disk (a diffusers folder, or one file with its config folder) into host memory."""
    try:
        with construction_lock:
            if spec.layout == "diffusers":
                module = ControlNetModel.from_pretrained(str(spec.path), torch_dtype=dtype, use_safetensors=True,
                                                         local_files_only=True)
            else:
                # Original (`control_model.*`) and diffusers key layouts alike; the config comes from disk.
                module = ControlNetModel.from_single_file(str(spec.path), config=str(spec.config_dir),
                                                          torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load ControlNet {spec.name!r}: {exc}") from exc
    module.eval()
    return LoadedControlNet(spec=spec, module=module, nbytes=module_bytes(module))


def controlnet_pipeline(loaded: LoadedModel, kind: str, controlnets: list[LoadedControlNet]) -> Any:
    """A ControlNet pipeline over the model's own modules and the given ControlNets (nothing is copied)."""
    cls = CONTROLNET_CLASS[(loaded.family, kind)]
    expected, optional = cls._get_signature_keys(cls)
    components = {k: v for k, v in loaded.txt2img.components.items() if k in expected and k != "controlnet"}
    modules = [c.module for c in controlnets]
    extra: dict[str, Any] = {}
    if "requires_safety_checker" in optional:
        extra["requires_safety_checker"] = False  # prompts are screened; see load_model
    if "add_watermarker" in optional:
        extra["add_watermarker"] = False  # latents out; the decode is ours
    pipe = cls(**components, controlnet=modules[0] if len(modules) == 1 else MultiControlNetModel(modules), **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class StepHooks:
    """How a running generation reports and is stopped; called on the worker thread."""

    on_step: Callable[[int, int, torch.Tensor], None] = lambda step, total, x0: None
    should_stop: Callable[[], bool] = lambda: False
    # A stop that keeps what was made (A1111's interrupt): the latents so far are decoded as if it ended.
    keep_partial: Callable[[], bool] = lambda: False
    # The control images, once made (before the first step), so they can be shown while it runs.
    on_control: Callable[[list[ControlImage]], None] = lambda images: None


@dataclass
class GenerationOutput:
    images: list[Image.Image]
    seeds: list[int]
    steps_run: int
    total_steps: int
    interrupted: bool
    timings: dict[str, float] = field(default_factory=dict)
    text_cache_hit: bool = False
    latent_cache_hit: bool = False
    control_cache_hits: int = 0  # units whose control image came from the cache
    vae_upcast: bool = False
    control_images: list[ControlImage] = field(default_factory=list)  # one per unit, in order


def text_cache_key(spec: ModelSpec, req: GenerationRequest) -> tuple:
    # A LoRA may change the text encoder, so the embeddings depend on the LoRAs too.
    return (spec.name, spec.fingerprint, req.prompt, req.negative_prompt, req.clip_skip, req.loras)


def latent_cache_key(spec: ModelSpec, image_sha256: str, width: int, height: int) -> tuple:
    # The VAE is identified by its model's fingerprint: a different file is a different VAE.
    return (spec.name, spec.fingerprint, "vae", image_sha256, width, height)


def resolve_size(spec: ModelSpec, req: GenerationRequest) -> tuple[int, int]:
    return req.width or spec.native_side, req.height or spec.native_side


@torch.no_grad()
def encode_prompt(loaded: LoadedModel, req: GenerationRequest, device: str) -> dict[str, torch.Tensor]:
    """Text-encoder outputs for the prompt and negative prompt, as pipeline keyword arguments."""
    with loaded.prompt_lock:
        return _encode_prompt(loaded, req, device)


def _encode_prompt(loaded: LoadedModel, req: GenerationRequest, device: str) -> dict[str, torch.Tensor]:
    pipe = loaded.txt2img
    # Diffusers counts skipped layers from the end; A1111's "Clip skip 1" means none skipped.
    clip_skip = req.clip_skip - 1 or None
    if loaded.family == "sdxl":
        pe, ne, pooled, neg_pooled = pipe.encode_prompt(
            prompt=req.prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=req.negative_prompt or None,
            clip_skip=clip_skip,
        )
        return {
            "prompt_embeds": pe,
            "negative_prompt_embeds": ne,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": neg_pooled,
        }
    if clip_skip:
        # diffusers 0.42 reaches `text_encoder.text_model` for clip skip, which transformers
        # >= 5.6 flattened away; the same computation, done here for either layout.
        dtype = pipe.unet.dtype
        return {
            "prompt_embeds": _skipped_clip_embeds(pipe, req.prompt, device, clip_skip).to(dtype),
            "negative_prompt_embeds": _skipped_clip_embeds(pipe, req.negative_prompt, device, clip_skip).to(dtype),
        }
    pe, ne = pipe.encode_prompt(req.prompt, device, 1, True, negative_prompt=req.negative_prompt or None)
    return {"prompt_embeds": pe, "negative_prompt_embeds": ne}


def _skipped_clip_embeds(pipe: Any, text: str, device: str, skip: int) -> torch.Tensor:
    tokens = pipe.tokenizer(
        text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    out = pipe.text_encoder(tokens.input_ids.to(device), output_hidden_states=True)
    encoder = getattr(pipe.text_encoder, "text_model", pipe.text_encoder)
    # hidden_states[-1] is the last layer; skipping N layers reads -(N + 1), then the final norm
    return encoder.final_layer_norm(out.hidden_states[-(skip + 1)])


@torch.no_grad()
def encode_init_image(loaded: LoadedModel, photo: Image.Image, device: str) -> torch.Tensor:
    """Scaled VAE latents of the init image, already at the request's size (the latent mode, no sampling).

    The mode rather than a sample keeps the result a pure function of (VAE, image, size),
    which is what lets it be cached, and leaves the job's seed to the noise alone.
    """
    pipe = loaded.img2img
    vae = pipe.vae
    image = pipe.image_processor.preprocess(photo, height=photo.height, width=photo.width)
    upcast = vae.dtype != torch.float32 and bool(getattr(vae.config, "force_upcast", False))
    dtype = torch.float32 if upcast else vae.dtype
    original = vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        latents = vae.encode(image.to(device=device, dtype=dtype)).latent_dist.mode()
    finally:
        if upcast:
            vae.to(original)
    return _to_unet_space(vae, latents)


def _to_unet_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        return (latents - mean_t) * vae.config.scaling_factor / std_t
    return latents * vae.config.scaling_factor


def _from_unet_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        return latents * std_t / vae.config.scaling_factor + mean_t
    return latents / vae.config.scaling_factor


def _overflowed(image: torch.Tensor) -> bool:
    if not torch.isfinite(image).all():
        return True
    per_image_std = image.float().flatten(1).std(dim=1)
    return bool((per_image_std < FLAT_IMAGE_STD).any())


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, *, force_float32: bool = False) -> tuple[torch.Tensor, bool]:
    """Decode to images in [-1, 1]; on a half-precision overflow, upcast the VAE and decode again.

    Returns (images, upcast) where `upcast` says a float32 decode was needed.
    """
    if not torch.isfinite(latents).all():
        raise GenerationFailed("the model produced NaN/inf latents; no VAE precision can decode them")
    original = vae.dtype

    def run(dtype: torch.dtype) -> torch.Tensor:
        if vae.dtype != dtype:
            vae.to(dtype)
        return vae.decode(_from_unet_space(vae, latents.to(dtype)), return_dict=False)[0]

    try:
        if force_float32 and original != torch.float32:
            return run(torch.float32).float(), True
        image = run(original)
        if original == torch.float32 or not _overflowed(image):
            return image.float(), False
        log.warning("VAE overflow in %s: decoding again in float32", original)
        return run(torch.float32).float(), True
    finally:
        if vae.dtype != original:
            vae.to(original)  # the cache accounts the model at its loaded precision


def _stop_on_flag(hooks: StepHooks, tap: X0Tap, state: dict[str, Any],
                  mask: LatentMask | None = None) -> Callable[..., dict]:
    def callback(pipe: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> dict:
        state["steps_run"] = index + 1
        total = pipe.num_timesteps
        state["total"] = total
        latents = kwargs["latents"]
        changed = {}
        if mask is not None:  # inpainting: the kept area goes back to the init image's, noised to the next step
            latents = changed["latents"] = mask.blend(pipe, index, latents)
        x0 = tap.take(latents)
        hooks.on_step(index + 1, total, mask.preview(x0) if mask is not None else x0)
        if hooks.should_stop():
            # diffusers' cooperative interrupt: every later step is skipped at once.
            pipe._interrupt = True
        return changed

    return callback


@dataclass
class Caches:
    """The engine's small caches a generation reads and fills (any may be None: no caching)."""

    text: TTLCache | None = None
    latent: TTLCache | None = None
    control: TTLCache | None = None  # decoded photos and control images, by content hash


def generate(
    loaded: LoadedModel,
    req: GenerationRequest,
    *,
    device: str,
    hooks: StepHooks | None = None,
    caches: Caches | None = None,
    lora_paths: dict[str, Path] | None = None,
    controlnets: dict[str, LoadedControlNet] | None = None,
) -> GenerationOutput:
    """Run one txt2img or img2img request on an already-placed model (worker thread).

    `controlnets` maps each of the request's ControlNet names to its placed module.
    """
    caches = caches or Caches()
    units = [(unit, (controlnets or {})[unit.model]) for unit in req.controls]
    for unit, controlnet in units:
        if controlnet.family != loaded.family:  # validation refuses this earlier; never run a mismatch
            raise GenerationFailed(f"ControlNet {unit.model!r} ({controlnet.family}) does not fit model "
                                   f"{loaded.spec.name!r} ({loaded.family})", code="controlnet_base_mismatch")
    if not req.loras:
        return _generate(loaded, req, device=device, hooks=hooks, caches=caches, units=units)
    pipe = loaded.txt2img  # img2img shares its UNet and text encoder, so the adapters apply to both
    names = [f"lora{i}" for i in range(len(req.loras))]
    try:
        with construction_lock:
            for adapter, (name, _weight) in zip(names, req.loras):
                pipe.load_lora_weights(str((lora_paths or {})[name]), adapter_name=adapter)
        pipe.set_adapters(names, adapter_weights=[float(weight) for _name, weight in req.loras])
        return _generate(loaded, req, device=device, hooks=hooks, caches=caches, units=units)
    finally:
        # The cached model stays as it was loaded: the next job may want no LoRA, or others.
        pipe.unload_lora_weights()


def _generate(
    loaded: LoadedModel,
    req: GenerationRequest,
    *,
    device: str,
    hooks: StepHooks | None,
    caches: Caches,
    units: list[tuple[ControlUnit, LoadedControlNet]],
) -> GenerationOutput:
    hooks = hooks or StepHooks()
    text_cache, latent_cache = caches.text, caches.latent
    photos = PhotoSource(caches.control)
    assert req.seed is not None, "resolve the seed before generating (GenerationRequest.with_seed)"
    spec = loaded.spec
    width, height = resolve_size(spec, req)
    timings: dict[str, float] = {}
    out = GenerationOutput(images=[], seeds=[req.seed + i for i in range(req.batch)], steps_run=0,
                           total_steps=req.steps, interrupted=False, timings=timings)

    started = time.perf_counter()
    embeds = text_cache.get(text_cache_key(spec, req)) if text_cache is not None else None
    out.text_cache_hit = embeds is not None
    if embeds is None:
        embeds = encode_prompt(loaded, req, device)
        if text_cache is not None:
            text_cache.put(text_cache_key(spec, req), to_cpu(embeds))
    dtype = loaded.txt2img.unet.dtype
    embeds = {k: v.to(device=device, dtype=dtype) for k, v in embeds.items()}
    timings["encode_prompt_s"] = time.perf_counter() - started

    kwargs: dict[str, Any] = {}
    latent_mask: LatentMask | None = None
    region: Region | None = None  # what an inpainting denoises, and how its answer is made
    if units:
        started = time.perf_counter()
        out.control_images = [photos.control(unit, width, height) for unit, _ in units]
        out.control_cache_hits = photos.control_hits
        timings["control_s"] = time.perf_counter() - started
        hooks.on_control(out.control_images)
        pipe = controlnet_pipeline(loaded, req.kind, [controlnet for _, controlnet in units])
        control = [Image.fromarray(image.rgb) for image in out.control_images]
        one = len(units) == 1
        kwargs.update(
            # A single ControlNet takes plain values; several (MultiControlNetModel) take lists.
            controlnet_conditioning_scale=float(units[0][0].scale) if one else [float(u.scale) for u, _ in units],
            control_guidance_start=[float(u.start) for u, _ in units],
            control_guidance_end=[float(u.end) for u, _ in units],
            **{"control_image" if req.kind == "img2img" else "image": control[0] if one else control},
        )
    else:
        pipe = loaded.img2img if req.kind == "img2img" else loaded.txt2img
    if req.kind == "txt2img" or units:  # plain img2img takes its size from the init latents
        kwargs.update(width=width, height=height)
    if req.kind == "img2img":
        assert req.init_image is not None
        started = time.perf_counter()
        if req.mask is not None:
            region = Region.make(lambda w, h: photos.photo(req.init_image, w, h), req.mask, width, height,
                                 whole=upright_size(req.init_image) if req.inpaint_full_res else None,
                                 padding=req.inpaint_full_res_padding)
        filled = region is not None and req.inpainting_fill == FILL
        key = latent_cache_key(spec, photos.digest(req.init_image), width, height)
        if region is not None:  # a cut-out, or a filled picture, depends on the mask too
            key += ("inpaint", region.box, photos.digest(req.mask) if filled else None)
        init = latent_cache.get(key) if latent_cache is not None else None
        out.latent_cache_hit = init is not None
        if init is None:
            rgb = region.photo if region is not None else photos.photo(req.init_image, width, height)
            photo = Image.fromarray(fill_masked(rgb, region.mask) if filled else rgb)
            init = encode_init_image(loaded, photo, device)
            if latent_cache is not None:
                latent_cache.put(key, to_cpu(init))
        init = init.to(device=device, dtype=dtype)
        if region is not None:
            latent_mask, init = LatentMask.make(region.mask, init, out.seeds, req.inpainting_fill)
        kwargs.update(image=init, strength=req.strength)
        timings["encode_image_s"] = time.perf_counter() - started

    scheduler = make_scheduler(req.sampler, loaded.scheduler_config)
    tap = X0Tap(scheduler)
    pipe.scheduler = scheduler
    state: dict[str, Any] = {"steps_run": 0, "total": req.steps}
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in out.seeds]
    started = time.perf_counter()
    with torch.inference_mode():
        result = pipe(
            num_inference_steps=req.steps,
            guidance_scale=req.guidance,
            num_images_per_prompt=req.batch,
            generator=generators,
            output_type="latent",
            callback_on_step_end=_stop_on_flag(hooks, tap, state, latent_mask),
            **embeds,
            **kwargs,
        )
    timings["denoise_s"] = time.perf_counter() - started
    out.steps_run, out.total_steps = state["steps_run"], state["total"]
    timings["steps_per_s"] = out.steps_run / timings["denoise_s"] if timings["denoise_s"] > 0 else 0.0
    if hooks.should_stop() or pipe.interrupt:
        out.interrupted = True
        if not hooks.keep_partial() or out.steps_run == 0:
            return out

    started = time.perf_counter()
    latents = result.images
    images, upcast = decode_latents(pipe.vae, latents, force_float32=loaded.vae_needs_float32)
    if upcast:
        loaded.vae_needs_float32 = out.vae_upcast = True
    out.images = pipe.image_processor.postprocess(images, output_type="pil")
    if region is not None:
        out.images = [region.finish(image) for image in out.images]
    timings["decode_s"] = time.perf_counter() - started
    return out
