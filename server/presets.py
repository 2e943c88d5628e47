"""Style presets: named bundles of generation settings a photo is rendered with (stylize jobs).

A preset holds a checkpoint, LoRAs with weights, ControlNet units (preprocessor, scale...),
a prompt template (the user's words go where `{subject}` is), negative prompt, strength,
steps, sampler and a size rule, with a cover image and words in English and Chinese.
Moderators create, edit and retire them; everyone lists them. Whether a preset can run is
computed from the models folder the workers share (the checkpoint, the LoRAs, the
ControlNets, and that each ControlNet fits the checkpoint's family), so a preset whose
model was deleted is listed as unavailable and refused when submitted, never failed later
on a worker. Light: no torch (the registry reads headers only).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inference.errors import InvalidRequest
from inference.images import fit_to_area
from inference.models import CONTROLNET_FOLDER, LORA_FOLDER, ModelRegistry
from inference.requests import FAMILY_LABEL, MAX_PROMPT_CHARS, MAX_SIDE_PX, MIN_SIDE_PX, SIDE_MULTIPLE_PX, \
    ControlUnit, GenerationRequest
from inference.screening import PromptScreen
from server.blobs import BlobStore
from server.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from server.executors import Executors
from server.ids import as_id
from server.images import make_display_copy
from server.moderation import require_moderator
from server.text import clean_text
from server.store.models import User, iso, utcnow
from server.store.stylize_tables import Preset

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")  # fullmatch: a handle for URLs, scripts and bots
TITLE_MAX_CHARS = 80
DESCRIPTION_MAX_CHARS = 2000
SUBJECT = "{subject}"
# The user's words: a few, not a prompt (the template is the prompt); screened with the prompt they make.
SUBJECT_MAX_CHARS = 300
MIN_PRESET_SIDE_PX = 256  # below it a ControlNet has too few pixels to follow
COVER_SIDE_PX = 768
# The models folder is rescanned when one of its folders changed, and at least this often (a file
# replaced inside a diffusers folder changes no folder listing).
RESCAN_SECS = 30.0
# A tiny stand-in photo, to check a preset's request with the engine's own rules (which read headers only).
_PLACEHOLDER = io.BytesIO()
Image.new("RGB", (8, 8), (128, 128, 128)).save(_PLACEHOLDER, format="PNG")
PLACEHOLDER_PHOTO = _PLACEHOLDER.getvalue()
# Fields a moderator sets (the rest are the service's own).
FIELDS = ("name", "title_en", "title_zh", "description_en", "description_zh", "checkpoint", "loras", "controls",
          "prompt_template", "negative_prompt", "strength", "steps", "guidance", "sampler", "side_px", "position")
DEFAULTS: dict[str, Any] = {"title_zh": "", "description_en": "", "description_zh": "", "loras": [], "controls": [],
                            "prompt_template": SUBJECT, "negative_prompt": "", "strength": None, "steps": 20,
                            "guidance": 7.0, "sampler": "Euler a", "side_px": None, "position": 0}


@dataclass(frozen=True)
class Recipe:
    """What a preset asks the engine for; `request()` makes the generation for one photo and subject."""

    checkpoint: str
    loras: tuple[tuple[str, float], ...]
    controls: tuple[dict[str, Any], ...]  # ControlUnit settings without the image
    prompt_template: str
    negative_prompt: str
    strength: float | None  # None: txt2img, the photo guides only through the ControlNet units
    steps: int
    guidance: float
    sampler: str
    side_px: int | None  # None: the checkpoint's native side

    @property
    def mode(self) -> str:
        return "txt2img" if self.strength is None else "img2img"

    def prompt(self, subject: str) -> str:
        """The template with the user's words where `{subject}` is (appended when it has none)."""
        subject = subject.strip()
        if SUBJECT in self.prompt_template:
            text = self.prompt_template.replace(SUBJECT, subject)
        else:
            text = f"{self.prompt_template}, {subject}" if subject else self.prompt_template
        # An empty subject leaves ", ,", "of ," or a leading comma behind; tidy them.
        text = re.sub(r"\s*,(\s*,)+", ",", text)
        text = re.sub(r"[ \t]+(?=,)", "", text)
        return text.strip(" ,\n")

    def size(self, photo_width: int, photo_height: int, native_side_px: int) -> tuple[int, int]:
        """The photo's aspect at about side² pixels (the model's native area), within the engine's limits."""
        width, height = fit_to_area(photo_width, photo_height, self.side_px or native_side_px, SIDE_MULTIPLE_PX)
        return (min(MAX_SIDE_PX, max(MIN_SIDE_PX, width)), min(MAX_SIDE_PX, max(MIN_SIDE_PX, height)))

    def request(self, *, subject: str, width: int, height: int, photo: bytes, seed: int | None = None
                ) -> GenerationRequest:
        units = tuple(ControlUnit(**unit, image=photo) for unit in self.controls)
        extra = {"init_image": photo, "strength": self.strength} if self.strength is not None else {}
        return GenerationRequest(model=self.checkpoint, prompt=self.prompt(subject), kind=self.mode,
                                 negative_prompt=self.negative_prompt, steps=self.steps, guidance=self.guidance,
                                 width=width, height=height, seed=seed, sampler=self.sampler, batch=1,
                                 loras=self.loras, controls=units, **extra)


def recipe_of(preset: Preset) -> Recipe:
    return Recipe(checkpoint=preset.checkpoint,
                  loras=tuple((item["name"], float(item["weight"])) for item in json.loads(preset.loras)),
                  controls=tuple(json.loads(preset.controls)), prompt_template=preset.prompt_template,
                  negative_prompt=preset.negative_prompt, strength=preset.strength, steps=preset.steps,
                  guidance=preset.guidance, sampler=preset.sampler, side_px=preset.side_px)


def check_request(request: GenerationRequest, registry: ModelRegistry, screen: PromptScreen | None) -> None:
    """The engine's own checks against the models folder, as `InvalidInput` naming the value."""
    names = registry.names()
    family = registry.get(request.model).family if request.model in names else None
    try:
        request.validate(names, screen, registry.lora_names(), model_family=family,
                         known_controlnets=registry.controlnet_families())
    except InvalidRequest as exc:
        raise InvalidInput(str(exc), code=exc.code) from None


def problems(recipe: Recipe, registry: ModelRegistry) -> list[dict[str, str]]:
    """Why a preset cannot run now (models missing, a ControlNet for another base); empty when it can."""
    found: list[dict[str, str]] = []
    names = registry.names()
    family = registry.get(recipe.checkpoint).family if recipe.checkpoint in names else None
    if family is None:
        found.append({"code": "missing_model", "name": recipe.checkpoint,
                      "message": f"The checkpoint {recipe.checkpoint!r} is not in the models folder."})
    loras = registry.lora_names()
    for name, _weight in recipe.loras:
        if name not in loras:
            found.append({"code": "missing_lora", "name": name,
                          "message": f"The LoRA {name!r} is not in the models folder's {LORA_FOLDER}/."})
    controlnets = registry.controlnet_families()
    for unit in recipe.controls:
        name = unit["model"]
        if name not in controlnets:
            found.append({"code": "missing_controlnet", "name": name,
                          "message": f"The ControlNet {name!r} is not in the models folder's {CONTROLNET_FOLDER}/."})
        elif family is not None and controlnets[name] != family:
            found.append({"code": "controlnet_base_mismatch", "name": name,
                          "message": f"The ControlNet {name!r} is made for "
                                     f"{FAMILY_LABEL.get(controlnets[name], controlnets[name])} but the checkpoint "
                                     f"{recipe.checkpoint!r} is {FAMILY_LABEL.get(family, family)}."})
    return found


def demo_preset_values(model: str, controlnet: str) -> dict[str, Any]:
    """A style for the tiny demo model and ControlNet (`run.py demo-model`): the whole flow on a CPU in seconds."""
    return {
        "name": "demo-lines", "title_en": "Line sketch (demo)", "title_zh": "线条素描（演示）",
        "description_en": "Follows the photo's edges. The demo model has random weights: expect colourful noise "
                          "shaped like your photo.",
        "description_zh": "沿着照片的轮廓作画。演示模型的权重是随机的：结果是带有照片轮廓的彩色噪点。",
        "checkpoint": model, "controls": [{"model": controlnet, "preprocessor": "canny", "scale": 1.0}],
        "prompt_template": "{subject}, clean line art, game asset", "negative_prompt": "blurry",
        "strength": 0.7, "steps": 4, "guidance": 5.0, "sampler": "Euler a", "side_px": MIN_PRESET_SIDE_PX,
    }


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset that can run now, as a stylize job needs it."""

    id: int
    name: str
    title_en: str
    recipe: Recipe
    native_side_px: int


class PresetService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], registry: ModelRegistry, blobs: BlobStore,
                 executors: Executors):
        self._db = sessions
        self.registry = registry
        self._blobs = blobs
        self._executors = executors
        self._scanned: tuple[float, tuple[int, ...]] | None = None  # (monotonic time, folder stamps)

    # Reading

    async def list(self, viewer: User | None, *, retired: bool = False) -> list[dict[str, Any]]:
        """Presets by position, each with whether it can run now; `retired` (moderators) lists retired ones too."""
        if retired:
            require_moderator(_signed_in(viewer))
        query = select(Preset).order_by(Preset.position, Preset.id)
        if not retired:
            query = query.where(Preset.retired_at.is_(None))
        async with self._db() as db:
            presets = list(await db.scalars(query))
        await self._rescan()
        return [self._json(preset) for preset in presets]

    async def get(self, ref: Any) -> dict[str, Any]:
        """One preset by id or name (retired ones too: a job or a share may name it)."""
        async with self._db() as db:
            preset = await self._find(db, ref)
        await self._rescan()
        return self._json(preset)

    async def resolve(self, ref: Any) -> ResolvedPreset:
        """The preset a stylize job names, if it can run now; a clear error otherwise."""
        async with self._db() as db:
            preset = await self._find(db, ref, field="preset", code="unknown_preset")
        if preset.retired_at is not None:
            raise Conflict(f"The style {preset.title_en!r} was retired; choose another.", code="preset_retired")
        await self._rescan()
        recipe = recipe_of(preset)
        found = problems(recipe, self.registry)
        if found:
            raise Conflict(f"The style {preset.title_en!r} is unavailable: "
                           + " ".join(problem["message"] for problem in found), code="preset_unavailable")
        return ResolvedPreset(id=preset.id, name=preset.name, title_en=preset.title_en, recipe=recipe,
                              native_side_px=self.registry.get(recipe.checkpoint).native_side)

    async def cover(self, ref: Any) -> tuple[str, bytes]:
        """A preset's cover image (WebP) and its sha256."""
        async with self._db() as db:
            preset = await self._find(db, ref)
        if preset.cover_sha256 is None:
            raise NotFound(f"The preset {preset.name!r} has no cover image.")
        return preset.cover_sha256, await self._executors.run_io(self._blobs.read_bytes, preset.cover_sha256)

    # Writing (moderators)

    async def create(self, moderator: User | None, values: dict[str, Any]) -> dict[str, Any]:
        """A new preset; its models must be in the models folder now."""
        if moderator is not None:
            require_moderator(moderator)
        missing = [name for name in ("name", "title_en", "checkpoint") if values.get(name) is None]
        if missing:
            raise InvalidInput(f"{', '.join(f'`{name}`' for name in missing)} must be given.")
        fields = await self._checked({**DEFAULTS, **values})
        preset = Preset(**fields, created_by=moderator.id if moderator else None)
        async with self._db() as db:
            db.add(preset)
            try:
                await db.commit()
            except IntegrityError:
                raise Conflict(f"A preset named {fields['name']!r} exists already.", code="preset_exists") from None
        return self._json(preset)

    async def update(self, moderator: User, ref: Any, values: dict[str, Any]) -> dict[str, Any]:
        """Change some fields (the others stay); `retired: true|false` retires or restores it."""
        require_moderator(moderator)
        retired = values.pop("retired", None)
        async with self._db() as db:
            preset = await self._find(db, ref)
            if values:  # only retiring or restoring checks nothing: a preset whose model is gone can be retired
                current = {name: getattr(preset, name) for name in FIELDS}
                current["loras"] = json.loads(preset.loras)
                current["controls"] = json.loads(preset.controls)
                fields = await self._checked({**current, **values})
                for name, value in fields.items():
                    setattr(preset, name, value)
            if retired is not None:
                preset.retired_at = (preset.retired_at or utcnow()) if retired else None
            try:
                await db.commit()
            except IntegrityError:
                raise Conflict(f"A preset named {values.get('name')!r} exists already.", code="preset_exists") from None
            await db.refresh(preset)
        return self._json(preset)

    async def ensure(self, values: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a preset (as the system, no moderator) unless one of its name exists; True when created."""
        async with self._db() as db:
            existing = await db.scalar(select(Preset).where(Preset.name == values["name"]))
        if existing is not None:
            await self._rescan()
            return self._json(existing), False
        return await self.create(None, values), True

    async def retire(self, moderator: User, ref: Any) -> dict[str, Any]:
        """Hide a preset from the cards and refuse new jobs for it; its jobs, posts and shares stay."""
        return await self.update(moderator, ref, {"retired": True})

    async def set_cover(self, moderator: User, ref: Any, data: bytes) -> dict[str, Any]:
        """Store an uploaded image (re-encoded, metadata dropped) as the preset's cover."""
        require_moderator(moderator)
        async with self._db() as db:
            await self._find(db, ref)  # a missing preset is told before the image is decoded
        cover, _width, _height = await self._executors.run_cpu(make_display_copy, data, COVER_SIDE_PX)
        digest = await self._executors.run_io(self._blobs.put_bytes, cover)
        async with self._db() as db:
            preset = await self._find(db, ref)
            preset.cover_sha256 = digest
            await db.commit()
            await db.refresh(preset)
        return self._json(preset)

    # Helpers

    async def _find(self, db: AsyncSession, ref: Any, *, field: str = "preset", code: str = "not_found") -> Preset:
        """By id (a number) or name; `code` is the error's code when there is none."""
        number = as_id(ref)
        if number is not None:
            preset = await db.get(Preset, number)
        elif isinstance(ref, str) and NAME_RE.fullmatch(ref):
            preset = await db.scalar(select(Preset).where(Preset.name == ref))
        else:
            preset = None
        if preset is None:
            error = InvalidInput if code != "not_found" else NotFound
            if ref is None or ref == "":
                raise error(f"Choose a style: `{field}` is the id or name of one of the listed presets.", code=code)
            raise error(f"There is no style {str(ref)[:40]!r} (`{field}`); choose one of the listed presets.",
                        code=code)
        return preset

    async def _checked(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every field checked: the words here, the generation by the engine's own rules on the models folder."""
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
        name = values["name"]
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidInput("`name` must be 2–40 lower-case letters, digits or -, starting with a letter or digit.",
                               code="invalid_name")
        fields = dict(values, name=name)
        fields["title_en"] = clean_text(values["title_en"], "title_en", TITLE_MAX_CHARS, required=True)
        fields["title_zh"] = clean_text(values["title_zh"], "title_zh", TITLE_MAX_CHARS)
        fields["description_en"] = clean_text(values["description_en"], "description_en", DESCRIPTION_MAX_CHARS)
        fields["description_zh"] = clean_text(values["description_zh"], "description_zh", DESCRIPTION_MAX_CHARS)
        template = values["prompt_template"]
        if not isinstance(template, str) or len(template) > MAX_PROMPT_CHARS - SUBJECT_MAX_CHARS:
            raise InvalidInput(f"`prompt_template` must be text of at most {MAX_PROMPT_CHARS - SUBJECT_MAX_CHARS} "
                               f"characters (the user's words join it).", code="prompt_too_long")
        side = values["side_px"]
        if side is not None and (not isinstance(side, int) or isinstance(side, bool) or side % SIDE_MULTIPLE_PX
                                 or not MIN_PRESET_SIDE_PX <= side <= MAX_SIDE_PX):
            raise InvalidInput(f"`side_px` must be empty (the model's native size) or a multiple of "
                               f"{SIDE_MULTIPLE_PX} in {MIN_PRESET_SIDE_PX}..{MAX_SIDE_PX}, not {side!r}.",
                               code="invalid_size")
        position = values["position"]
        if not isinstance(position, int) or isinstance(position, bool) or not -10_000 <= position <= 10_000:
            raise InvalidInput("`position` must be a whole number in -10000..10000.")
        loras, controls = values["loras"], values["controls"]
        if not isinstance(loras, list) or not all(isinstance(item, dict) and set(item) <= {"name", "weight"}
                                                  and "name" in item for item in loras):
            raise InvalidInput("`loras` must be a list of {name, weight}.", code="invalid_lora")
        if not isinstance(controls, list) or not controls:
            raise InvalidInput("`controls` must list at least one ControlNet unit: a style follows the photo "
                               "through it.", code="invalid_control")
        units = [{**ControlUnit(model="").settings(), **unit} if isinstance(unit, dict) else unit
                 for unit in controls]
        fields["loras"] = [{"name": item["name"], "weight": item.get("weight", 1.0)} for item in loras]
        fields["controls"] = units
        recipe = Recipe(checkpoint=values["checkpoint"],
                        loras=tuple((item["name"], item["weight"]) for item in fields["loras"]),
                        controls=tuple(units), prompt_template=template, negative_prompt=values["negative_prompt"],
                        strength=values["strength"], steps=values["steps"], guidance=values["guidance"],
                        sampler=values["sampler"], side_px=side)
        await self._rescan(force=True)
        try:
            request = recipe.request(subject="a subject", width=512, height=512, photo=PLACEHOLDER_PHOTO)
        except TypeError as exc:  # a unit with keys ControlUnit does not have
            raise InvalidInput(f"A ControlNet unit does not fit: {exc}.", code="invalid_control") from None
        check_request(request, self.registry, None)  # the template is screened with the user's words, per job
        fields["loras"] = json.dumps(fields["loras"])
        fields["controls"] = json.dumps(units)
        return fields

    async def _rescan(self, *, force: bool = False) -> None:
        """Rescan the models folder when it changed (or RESCAN_SECS passed): reads headers, on the I/O pool."""
        stamps = await self._executors.run_io(self._folder_stamps)
        now = time.monotonic()
        if not force and self._scanned is not None and self._scanned[1] == stamps \
                and now - self._scanned[0] < RESCAN_SECS:
            return
        await self._executors.run_io(self.registry.refresh)
        self._scanned = (now, stamps)

    def _folder_stamps(self) -> tuple[int, ...]:
        root = self.registry.models_dir
        stamps = []
        for folder in (root, root / CONTROLNET_FOLDER, root / LORA_FOLDER):
            try:
                stamps.append(os.stat(folder).st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return tuple(stamps)

    def _json(self, preset: Preset) -> dict[str, Any]:
        found = problems(recipe_of(preset), self.registry)
        return {
            "id": preset.id, "name": preset.name,
            "title": {"en": preset.title_en, "zh": preset.title_zh or preset.title_en},
            "description": {"en": preset.description_en, "zh": preset.description_zh or preset.description_en},
            "checkpoint": preset.checkpoint, "loras": json.loads(preset.loras),
            "controls": json.loads(preset.controls), "prompt_template": preset.prompt_template,
            "negative_prompt": preset.negative_prompt, "strength": preset.strength, "steps": preset.steps,
            "guidance": preset.guidance, "sampler": preset.sampler, "side_px": preset.side_px,
            "position": preset.position,
            "cover_url": f"/api/presets/{preset.id}/cover?v={preset.cover_sha256[:12]}" if preset.cover_sha256 else None,
            "available": not found, "problems": found,
            "retired": preset.retired_at is not None,
            "created_at": iso(preset.created_at), "updated_at": iso(preset.updated_at),
        }


def _signed_in(user: User | None) -> User:
    if user is None:
        raise Unauthenticated("Sign in first.")
    return user
