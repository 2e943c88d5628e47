"""What a caller asks the engine for, and the checks that refuse bad requests up front."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Collection, Literal

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
    clip_skip: int = 1  # A1111 convention: 1 uses the last layer, 2 the one before it
    # (name, weight) of LoRAs under the models folder's `loras/`, applied for this request only.
    loras: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # JSON (a stored job, a client) gives lists or {name, weight} maps; keep one hashable form.
        if isinstance(self.loras, (list, tuple)):
            pairs = []
            for item in self.loras:
                if isinstance(item, dict):
                    item = (item.get("name"), item.get("weight", 1.0))
                pairs.append(tuple(item) if isinstance(item, (list, tuple)) else item)
            object.__setattr__(self, "loras", tuple(pairs))

    def with_seed(self) -> "GenerationRequest":
        """A copy with a concrete seed, so the seed can be reported and reproduced."""
        return self if self.seed is not None else replace(self, seed=secrets.randbelow(MAX_SEED + 1))

    def validate(self, known_models: Collection[str], screen: PromptScreen | None = None,
                 known_loras: Collection[str] = ()) -> None:
        """Raise InvalidRequest naming the first bad value; return None when the request is good."""
        if self.kind not in ("txt2img", "img2img"):
            raise InvalidRequest(f"`kind` must be 'txt2img' or 'img2img' but is {self.kind!r}.", code="invalid_kind")
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
            raise InvalidRequest(f"`guidance` must be a number but is {self.guidance!r}.", code="invalid_guidance")
        if not math.isfinite(self.guidance) or not MIN_GUIDANCE <= self.guidance <= MAX_GUIDANCE:
            raise InvalidRequest(
                f"`guidance` has to be a finite number in {MIN_GUIDANCE:g}..{MAX_GUIDANCE:g} but is {self.guidance!r}.",
                code="invalid_guidance",
                field="guidance",
            )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise InvalidRequest(f"`seed` has to be in 0..{MAX_SEED} but is {self.seed!r}.", code="invalid_seed")
        if self.sampler not in SAMPLERS:
            raise InvalidRequest(
                f"`sampler` {self.sampler!r} is unknown; choose one of {sorted(SAMPLERS)}.", code="invalid_sampler"
            )
        if not _is_int(self.batch) or not 1 <= self.batch <= MAX_BATCH:
            raise InvalidRequest(f"`batch` has to be in 1..{MAX_BATCH} but is {self.batch!r}.", code="invalid_batch")
        if not _is_int(self.clip_skip) or not 1 <= self.clip_skip <= MAX_CLIP_SKIP:
            raise InvalidRequest(
                f"`clip_skip` has to be in 1..{MAX_CLIP_SKIP} but is {self.clip_skip!r}.", code="invalid_clip_skip"
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
                    f"`strength` has to be in (0, 1] but is {self.strength!r}.", code="invalid_strength", field="strength"
                )
        elif self.init_image is not None:
            raise InvalidRequest("`init_image` is only for img2img.", code="invalid_image", field="init_image")
        _check_loras(self.loras, known_loras)
        if screen is not None:
            screen.check(self.prompt)


def _check_loras(loras: object, known: Collection[str]) -> None:
    if not isinstance(loras, tuple) or len(loras) > MAX_LORAS:
        raise InvalidRequest(f"`loras` must be a list of at most {MAX_LORAS} {{name, weight}}.", code="invalid_lora")
    names = set()
    for item in loras:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidRequest("Each of `loras` must be {name, weight}.", code="invalid_lora")
        name, weight = item
        if not isinstance(name, str) or name not in known:
            raise InvalidRequest(f"LoRA {str(name)[:80]!r} is not one this engine has.", code="unknown_lora")
        if name in names:
            raise InvalidRequest(f"LoRA {name!r} is listed twice.", code="invalid_lora")
        names.add(name)
        if (not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight)
                or not MIN_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT):
            raise InvalidRequest(f"LoRA {name!r} weight has to be in {MIN_LORA_WEIGHT:g}..{MAX_LORA_WEIGHT:g} "
                                 f"but is {weight!r}.", code="invalid_lora")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string but is {type(value).__name__}.", code="invalid_prompt")
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
