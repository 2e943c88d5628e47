"""What each kind of job asks for, checked before anything is stored (light: no torch, no OpenCV).

A web process validates with the same rules the workers apply (`inference.requests`,
the models folder the workers share, prompt screening); a worker checks again
before it runs a job, so a model that only the web process can see fails that job
alone (`model_unavailable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config import Settings
from inference.art_names import ART_MODEL, PRESET_NAMES, STYLES
from inference.errors import InvalidRequest
from inference.models import ModelRegistry
from inference.requests import GenerationRequest
from inference.screening import PromptScreen
from server.errors import InvalidInput, PayloadTooLarge
from server.executors import Executors
from server.images import probe_checked

if TYPE_CHECKING:  # the stylize parser is injected: it needs presets, which need the database
    from server.jobs.stylize import StylizeParser

GENERATION_KINDS = ("txt2img", "img2img")
ART_KIND = "art"
STYLIZE_KIND = "stylize"
KINDS = (*GENERATION_KINDS, ART_KIND, STYLIZE_KIND)
# Fields a generation request may carry (besides `public` and the image), in the order they are stored.
GENERATION_FIELDS = ("kind", "model", "prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed",
                     "sampler", "batch", "strength", "loras")
# An inpainting job's too (its mask is a blob beside the init image, named in the settings by MASK_BLOB).
MASK_FIELDS = ("inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding")
MASK_BLOB = "mask_sha256"
ART_FIELDS = ("kind", "preset")
# Filters need a neighbourhood to work with; a 1×1 "photo" is a mistake, not art.
MIN_PHOTO_SIDE_PX = 32
# Longer sides are refused from the header, whatever the pixel count (a 30,000×10 strip is no photo).
MAX_PHOTO_SIDE_PX = 12_000
# EXIF orientations that turn the picture a quarter: its upright width is the stored height.
QUARTER_TURNS = {5, 6, 7, 8}


@dataclass(frozen=True)
class JobSpec:
    """A checked request: what the job row stores and the queue orders by."""

    kind: str
    model: str
    settings: dict[str, Any]  # stored as the row's settings; a worker runs the job from them
    image: bytes | None  # stored as a blob: the init image or the photo
    image_sha256: str | None = None  # or a blob stored before (a photo styled again): nothing is uploaded
    mask: bytes | None = None  # an img2img job's inpainting mask, stored as a blob too


class JobKinds:
    def __init__(self, registry: ModelRegistry, screen: PromptScreen | None, executors: Executors,
                 settings: Settings, stylize: StylizeParser | None = None):
        self.registry = registry
        self._screen = screen
        self._executors = executors
        self._settings = settings
        self._stylize = stylize

    async def parse(self, params: dict[str, Any], image: bytes | None, *, owner_id: int | None = None,
                    mask: bytes | None = None) -> JobSpec:
        """Check a request of any kind for its owner (`mask`: img2img's inpainting); errors name the field."""
        kind = params.get("kind", "txt2img")
        if kind == ART_KIND:
            return await self._art(params, image)
        if kind == STYLIZE_KIND and self._stylize is not None:
            return await self._stylize.parse(params, image, owner_id=owner_id)
        if kind not in GENERATION_KINDS:
            raise InvalidInput(f"`kind` must be one of {', '.join(KINDS)} but is {str(kind)[:40]!r}.",
                               code="invalid_kind")
        return await self._generation(params, image, mask)

    async def _generation(self, params: dict[str, Any], image: bytes | None, mask: bytes | None) -> JobSpec:
        """txt2img/img2img, optionally with ControlNet `controls` (unit settings without their image).

        A job has one input image: the init image of an img2img job, and the image every ControlNet
        unit follows (the worker gives it to each, see `server.worker.generation.engine_request`).
        """
        unknown = set(params) - set(GENERATION_FIELDS) - set(MASK_FIELDS) - {"public", "init_image", "controls"}
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
        for name, data in (("init_image", image), ("mask", mask)):
            if data is not None and len(data) > self._settings.max_init_image_bytes:
                raise InvalidInput(f"`{name}` must be at most {self._settings.max_init_image_bytes // 2**20} MiB.",
                                   code="image_too_large", data={"field": name})
        fields = {name: params[name] for name in (*GENERATION_FIELDS, *MASK_FIELDS) if params.get(name) is not None}
        if mask is None and any(name in params for name in MASK_FIELDS):
            raise InvalidInput(f"`{', '.join(MASK_FIELDS)}` are only for a request with a mask.",
                               code="invalid_mask", data={"field": "mask"})
        if "model" not in fields or "prompt" not in fields:
            raise InvalidInput("`model` and `prompt` are required.")
        controls = params.get("controls") or []
        if not isinstance(controls, list) or not all(isinstance(unit, dict) and "image" not in unit
                                                     for unit in controls):
            raise InvalidInput("`controls` must be a list of ControlNet unit settings (their image is the job's).",
                               code="invalid_control", data={"field": "controls"})
        if controls and image is None:
            raise InvalidInput("ControlNet units need an image to follow.", code="invalid_image",
                               data={"field": "controls"})
        names = self.registry.names()
        if fields["model"] not in names:
            # A model may have been added since the last scan (reads headers only, on the I/O pool).
            names = frozenset(await self._executors.run_io(self.registry.refresh))
        kind = fields.get("kind", "txt2img")
        try:
            units = [{**unit, "image": image} for unit in controls]
            request = GenerationRequest(**fields, init_image=image if kind == "img2img" else None, controls=units,
                                        mask=mask)
            family = self.registry.get(request.model).family if controls and request.model in names else None
            request.validate(names, self._screen, self.registry.lora_names() if request.loras else (),
                             model_family=family, known_controlnets=self.registry.controlnet_families())
        except TypeError as exc:  # a field of the wrong shape for the dataclass (e.g. a map of loras)
            raise InvalidInput(f"The request does not fit: {exc}.") from None
        except InvalidRequest as exc:
            raise InvalidInput(str(exc), code=exc.code, data={"field": exc.field} if exc.field else None) from None
        if kind == "txt2img" and image is not None and not controls:
            raise InvalidInput("`init_image` is only for img2img.", code="invalid_image", data={"field": "init_image"})
        request = request.with_seed()
        stored: dict[str, Any] = {name: getattr(request, name) for name in GENERATION_FIELDS}
        if request.controls:
            stored["controls"] = [unit.settings() for unit in request.controls]
        if request.mask is not None:
            stored.update({name: getattr(request, name) for name in MASK_FIELDS})
        return JobSpec(kind=request.kind, model=request.model, settings=stored, image=image, mask=request.mask)

    async def _art(self, params: dict[str, Any], photo: bytes | None) -> JobSpec:
        unknown = set(params) - set(ART_FIELDS) - {"public"}
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
        preset = params.get("preset") or "fast"
        if preset not in PRESET_NAMES:
            raise InvalidInput(f"`preset` must be one of {', '.join(PRESET_NAMES)} but is {str(preset)[:40]!r}.",
                               code="invalid_preset")
        if not isinstance(photo, (bytes, bytearray)) or not photo:
            raise InvalidInput("Send a photo: the body is empty.", code="not_an_image")
        limit = self._settings.art_max_upload_bytes
        if len(photo) > limit:
            raise PayloadTooLarge(f"The photo is {len(photo):,} bytes; at most {limit:,} are accepted.")
        # The header only: the worker decodes. A decompression bomb or a 30,000 px strip stops here.
        width, height = await self._executors.run_cpu(upright_size, bytes(photo))
        scale = min(1.0, self._settings.art_max_side_px / max(width, height))
        settings = {"preset": preset, "max_side": self._settings.art_max_side_px, "styles": list(STYLES),
                    "width": max(1, round(width * scale)), "height": max(1, round(height * scale)),
                    "source_width": width, "source_height": height}
        return JobSpec(kind=ART_KIND, model=ART_MODEL, settings=settings, image=bytes(photo))


def upright_size(data: bytes) -> tuple[int, int]:
    """Width and height of an upload as it will be shown (EXIF orientation applied), from its header."""
    with probe_checked(data, min_side_px=MIN_PHOTO_SIDE_PX, max_side_px=MAX_PHOTO_SIDE_PX) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def total_steps(kind: str, settings: dict[str, Any]) -> int:
    """What progress counts to: denoising steps, or the styles of an art job."""
    if kind == ART_KIND:
        return len(settings.get("styles", STYLES))
    return int(settings.get("steps", 0))

