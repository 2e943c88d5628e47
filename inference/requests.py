"""What a caller asks the engine for, and the checks that refuse bad requests up front."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, fields, replace
from typing import Any, Collection, Literal, Mapping

from inference.errors import InvalidRequest, UnknownModel
from inference.images import probe_image
from inference.sampler_names import SAMPLERS
from inference.screening import PromptScreen

Kind = Literal["txt2img", "img2img"]

MIN_STEPS, MAX_STEPS = 1, 150
MIN_SIDE_PX, MAX_SIDE_PX = 64, 2048
SIDE_MULTIPLE_PX = 8  # the VAE downsamples by 8; other sizes crop silently in diffusers
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 30.0
MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens; 2000 chars leaves room for weighting syntax
MAX_BATCH = 8
MAX_SEED = 2**32 - 1  # A1111 seeds are unsigned 32-bit; keeps PNG metadata portable
MAX_CLIP_SKIP = 12
MAX_LORAS = 4
# A1111 accepts any weight; beyond ±2 a LoRA only burns the image, so a larger one is a typo.
MIN_LORA_WEIGHT, MAX_LORA_WEIGHT = -2.0, 2.0

# ControlNet units (the preprocessors themselves are in inference/control.py, which needs OpenCV).
PREPROCESSORS = ("canny", "softedge", "tile", "none")  # "none": the image already is a control image
MAX_CONTROL_UNITS = 3  # A1111's default; every unit is one more ControlNet forward per step
MIN_CONTROL_SCALE, MAX_CONTROL_SCALE = 0.0, 2.0
MIN_CANNY_THRESHOLD, MAX_CANNY_THRESHOLD = 1, 255  # A1111's slider range, on 8-bit gradients
DEFAULT_CANNY_LOW, DEFAULT_CANNY_HIGH = 100, 200
# A1111's `inpainting_fill` values, in its order (the engine's meaning is in inference/inpaint.py).
INPAINTING_FILLS = ("fill", "original", "latent noise", "latent nothing")
MAX_INPAINT_PADDING_PX = 256  # A1111's slider
FAMILY_LABEL = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet applied to a generation: which model, on which image, how strongly, when.

    `start`/`end` are the fractions of the denoising steps during which the unit acts.
    `image` is the photo (or, with preprocessor "none", a ready control image); `settings()`
    is the rest as JSON, for callers that store the image elsewhere (a blob) and rebuild
    the unit with `ControlUnit(**settings, image=...)`.
    """

    model: str
    image: bytes = field(default=b"", repr=False)
    preprocessor: str = "canny"
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    low_threshold: int = DEFAULT_CANNY_LOW
    high_threshold: int = DEFAULT_CANNY_HIGH

    def settings(self) -> dict[str, Any]:
        """Everything but the image, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}

    def preprocess_key(self) -> tuple:
        """What the preprocessor's output depends on besides the image and the size."""
        if self.preprocessor == "canny":
            return (self.preprocessor, self.low_threshold, self.high_threshold)
        return (self.preprocessor,)


CONTROL_UNIT_FIELDS = frozenset(f.name for f in fields(ControlUnit))


@dataclass(frozen=True)
class GenerationRequest:
    """One generation job. `width`/`height` None means the model family's native size."""

    model: str
    prompt: str
    kind: Kind = "txt2img"
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    sampler: str = "Euler a"
    batch: int = 1
    init_image: bytes | None = field(default=None, repr=False)
    strength: float = 0.75
    # Inpainting (img2img only): white repaints, black keeps, grey feathers; see inference/inpaint.py.
    mask: bytes | None = field(default=None, repr=False)
    inpainting_fill: int = 1  # A1111's: what the repainted area starts from (INPAINTING_FILLS)
    inpaint_full_res: bool = False  # A1111's "only masked": the mask's surroundings denoised at the request's size
    inpaint_full_res_padding: int = 0  # px around the mask's box, in the init image
    clip_skip: int = 1  # A1111 convention: 1 uses the last layer, 2 the one before it
    # (name, weight) of LoRAs under the models folder's `loras/`, applied for this request only.
    loras: tuple[tuple[str, float], ...] = ()
    # ControlNet units, in order; JSON gives {model, image, preprocessor, scale, start, end, ...} maps.
    controls: tuple[ControlUnit, ...] = ()

    def __post_init__(self) -> None:
        # JSON (a stored job, a client) gives lists or {name, weight} maps; keep one hashable form.
        if isinstance(self.loras, (list, tuple)):
            pairs = []
            for item in self.loras:
                if isinstance(item, dict):
                    item = (item.get("name"), item.get("weight", 1.0))
                pairs.append(tuple(item) if isinstance(item, (list, tuple)) else item)
            object.__setattr__(self, "loras", tuple(pairs))
        if isinstance(self.controls, (list, tuple)):
            # A map with unknown keys stays a map: validate() refuses it, naming the keys.
            units = [ControlUnit(**item) if isinstance(item, dict) and "model" in item
                     and set(item) <= CONTROL_UNIT_FIELDS else item for item in self.controls]
            object.__setattr__(self, "controls", tuple(units))

    def with_seed(self) -> "GenerationRequest":
        """A copy with a concrete seed, so the seed can be reported and reproduced."""
        return self if self.seed is not None else replace(self, seed=secrets.randbelow(MAX_SEED + 1))

    def validate(self, known_models: Collection[str], screen: PromptScreen | None = None,
                 known_loras: Collection[str] = (), *, model_family: str | None = None,
                 known_controlnets: Mapping[str, str] | None = None) -> None:
        """Raise InvalidRequest naming the first bad value; return None when the request is good.

        `known_controlnets` maps ControlNet names to their family; with `model_family` (the
        checkpoint's) a ControlNet made for another family is refused here, before any load.
        """
        if self.kind not in ("txt2img", "img2img"):
            raise InvalidRequest(f"`kind` must be 'txt2img' or 'img2img' but is {self.kind!r}.",
                                 code="invalid_kind", field="kind")
        if not isinstance(self.model, str) or self.model not in known_models:
            raise UnknownModel(f"`model` {self.model!r} is not a model this engine can load.")
        _check_text("prompt", self.prompt)
        _check_text("negative_prompt", self.negative_prompt)
        if not _is_int(self.steps) or not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise InvalidRequest(
                f"`steps` has to be an integer in {MIN_STEPS}..{MAX_STEPS} but is {self.steps!r}.",
                code="invalid_steps",
                field="steps",
            )
        for name in ("width", "height"):
            _check_side(name, getattr(self, name))
        if not isinstance(self.guidance, (int, float)) or isinstance(self.guidance, bool):
            raise InvalidRequest(f"`guidance` must be a number but is {self.guidance!r}.",
                                 code="invalid_guidance", field="guidance")
        if not math.isfinite(self.guidance) or not MIN_GUIDANCE <= self.guidance <= MAX_GUIDANCE:
            raise InvalidRequest(
                f"`guidance` has to be a finite number in {MIN_GUIDANCE:g}..{MAX_GUIDANCE:g} but is {self.guidance!r}.",
                code="invalid_guidance",
                field="guidance",
            )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise InvalidRequest(f"`seed` has to be in 0..{MAX_SEED} but is {self.seed!r}.",
                                 code="invalid_seed", field="seed")
        if self.sampler not in SAMPLERS:
            raise InvalidRequest(
                f"`sampler` {self.sampler!r} is unknown; choose one of {sorted(SAMPLERS)}.",
                                                                               code="invalid_sampler", field="sampler"
            )
        if not _is_int(self.batch) or not 1 <= self.batch <= MAX_BATCH:
            raise InvalidRequest(f"`batch` has to be in 1..{MAX_BATCH} but is {self.batch!r}.",
                                 code="invalid_batch", field="batch")
        if not _is_int(self.clip_skip) or not 1 <= self.clip_skip <= MAX_CLIP_SKIP:
            raise InvalidRequest(
                f"`clip_skip` has to be in 1..{MAX_CLIP_SKIP} but is {self.clip_skip!r}.",
                    code="invalid_clip_skip", field="clip_skip"
            )
        if self.kind == "img2img":
            if self.init_image is None:
                raise InvalidRequest("`init_image` is required for img2img.", code="invalid_image", field="init_image")
            probe_image(self.init_image)
            if (
                not isinstance(self.strength, (int, float))
                or not math.isfinite(self.strength)
                or not 0.0 < self.strength <= 1.0
            ):
                raise InvalidRequest(
                    f"`strength` has to be in (0, 1] but is {self.strength!r}.",
                                               code="invalid_strength", field="strength"
                )
            if self.mask is not None:
                probe_image(self.mask, field="mask")
            if not _is_int(self.inpainting_fill) or not 0 <= self.inpainting_fill < len(INPAINTING_FILLS):
                raise InvalidRequest(f"`inpainting_fill` has to be 0..{len(INPAINTING_FILLS) - 1} "
                                     f"({', '.join(INPAINTING_FILLS)}) but is {self.inpainting_fill!r}.",
                                     code="invalid_mask", field="inpainting_fill")
            if not isinstance(self.inpaint_full_res, bool):
                raise InvalidRequest("`inpaint_full_res` must be true or false.", code="invalid_mask",
                                     field="inpaint_full_res")
            if (not _is_int(self.inpaint_full_res_padding)
                    or not 0 <= self.inpaint_full_res_padding <= MAX_INPAINT_PADDING_PX):
                raise InvalidRequest(f"`inpaint_full_res_padding` has to be 0..{MAX_INPAINT_PADDING_PX} px "
                                     f"but is {self.inpaint_full_res_padding!r}.", code="invalid_mask",
                                     field="inpaint_full_res_padding")
        elif self.init_image is not None:
            raise InvalidRequest("`init_image` is only for img2img.", code="invalid_image", field="init_image")
        elif self.mask is not None:
            raise InvalidRequest("`mask` is only for img2img.", code="invalid_mask", field="mask")
        _check_loras(self.loras, known_loras)
        _check_controls(self.controls, known_controlnets or {}, self.model, model_family)
        if screen is not None:
            screen.check(self.prompt)


def _check_loras(loras: object, known: Collection[str]) -> None:
    if not isinstance(loras, tuple) or len(loras) > MAX_LORAS:
        raise InvalidRequest(f"`loras` must be a list of at most {MAX_LORAS} {{name, weight}}.",
                             code="invalid_lora", field="loras")
    names = set()
    for item in loras:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidRequest("Each of `loras` must be {name, weight}.", code="invalid_lora", field="loras")
        name, weight = item
        if not isinstance(name, str) or name not in known:
            raise InvalidRequest(f"LoRA {str(name)[:80]!r} is not one this engine has.",
                                 code="unknown_lora", field="loras")
        if name in names:
            raise InvalidRequest(f"LoRA {name!r} is listed twice.", code="invalid_lora", field="loras")
        names.add(name)
        if (not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight)
                or not MIN_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT):
            raise InvalidRequest(f"LoRA {name!r} weight has to be in {MIN_LORA_WEIGHT:g}..{MAX_LORA_WEIGHT:g} "
                                 f"but is {weight!r}.", code="invalid_lora", field="loras")


def _check_controls(units: object, known: Mapping[str, str], model: str, model_family: str | None) -> None:
    if not isinstance(units, tuple) or len(units) > MAX_CONTROL_UNITS:
        raise InvalidRequest(f"`controls` must be a list of at most {MAX_CONTROL_UNITS} ControlNet units.",
                             code="invalid_control", field="controls")
    for index, unit in enumerate(units):
        where = f"controls[{index}]"
        if not isinstance(unit, ControlUnit):
            extra = sorted(set(unit) - CONTROL_UNIT_FIELDS) if isinstance(unit, dict) else []
            detail = f"; unknown keys {extra}" if extra else ""
            raise InvalidRequest(f"`{where}` must be {{model, image, preprocessor, scale, start, end, "
                                 f"low_threshold, high_threshold}}{detail}.", code="invalid_control", field="controls")
        if not isinstance(unit.model, str) or unit.model not in known:
            raise InvalidRequest(f"`{where}.model` {str(unit.model)[:80]!r} is not a ControlNet this engine has.",
                                 code="unknown_controlnet", field="controls")
        family = known[unit.model]
        if model_family is not None and family != model_family:
            raise InvalidRequest(
                f"ControlNet {unit.model!r} is made for {FAMILY_LABEL.get(family, family)} but model {model!r} is "
                f"{FAMILY_LABEL.get(model_family, model_family)}; choose a ControlNet for "
                f"{FAMILY_LABEL.get(model_family, model_family)}.", code="controlnet_base_mismatch", field="controls")
        if unit.preprocessor not in PREPROCESSORS:
            raise InvalidRequest(f"`{where}.preprocessor` must be one of {', '.join(PREPROCESSORS)} "
                                 f"but is {str(unit.preprocessor)[:40]!r}.", code="invalid_control", field="controls")
        _check_fraction(f"{where}.scale", unit.scale, MIN_CONTROL_SCALE, MAX_CONTROL_SCALE)
        _check_fraction(f"{where}.start", unit.start, 0.0, 1.0)
        _check_fraction(f"{where}.end", unit.end, 0.0, 1.0)
        if not unit.start < unit.end:
            raise InvalidRequest(f"`{where}.start` ({unit.start!r}) must be below `{where}.end` ({unit.end!r}).",
                                 code="invalid_control", field="controls")
        for name in ("low_threshold", "high_threshold"):
            value = getattr(unit, name)
            if not _is_int(value) or not MIN_CANNY_THRESHOLD <= value <= MAX_CANNY_THRESHOLD:
                raise InvalidRequest(f"`{where}.{name}` has to be an integer in {MIN_CANNY_THRESHOLD}.."
                                     f"{MAX_CANNY_THRESHOLD} but is {value!r}.",
                                         code="invalid_control", field="controls")
        if unit.low_threshold > unit.high_threshold:
            raise InvalidRequest(f"`{where}.low_threshold` ({unit.low_threshold}) must not exceed "
                                 f"`high_threshold` ({unit.high_threshold}).", code="invalid_control", field="controls")
        probe_image(unit.image, field=f"{where}.image")


def _check_fraction(name: str, value: object, low: float, high: float) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not low <= value <= high):
        raise InvalidRequest(f"`{name}` has to be a number in {low:g}..{high:g} but is {value!r}.",
                             code="invalid_control", field="controls")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string but is {type(value).__name__}.",
                             code="invalid_prompt", field=name)
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"`{name}` is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}.",
            code="prompt_too_long",
            field=name,
        )


def _check_side(name: str, value: object) -> None:
    if value is None:
        return
    if not _is_int(value) or not MIN_SIDE_PX <= value <= MAX_SIDE_PX or value % SIDE_MULTIPLE_PX:
        raise InvalidRequest(
            f"`{name}` has to be divisible by {SIDE_MULTIPLE_PX} and in {MIN_SIDE_PX}..{MAX_SIDE_PX} but is {value!r}.",
            code="invalid_size",
            field=name,
        )
