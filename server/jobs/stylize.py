"""Stylize jobs as the web checks them: a photo and a style preset make one generation (light: no torch).

`JobService.submit(user, {"kind": "stylize", "preset": <id or name>, "subject": <words>}, photo)`
checks the photo from its header (format, size, the upright size from EXIF), resolves the preset
(it must exist, not be retired and have its models), sizes the generation by the preset's rule
(the photo's aspect at the model's native area) and checks the request with the engine's own
rules. The row stores the request without the photo: the photo is the job's input blob, which
the worker gives to every ControlNet unit (and as the init image, for an img2img preset).

`photo_of: <job id>` instead of a photo styles again the photo of one of the caller's own
stylize jobs: the blob is content-addressed, so nothing is uploaded or stored again, and the
worker's caches (keyed by the photo's sha256) decode and preprocess nothing again.
"""

from __future__ import annotations

import json
from typing import Any

from config import Settings
from inference.screening import PromptScreen
from server.errors import InvalidInput, PayloadTooLarge
from server.executors import Executors
from server.jobs.kinds import STYLIZE_KIND, JobSpec, upright_size
from server.jobs.records import JobRecords
from server.presets import PLACEHOLDER_PHOTO, SUBJECT_MAX_CHARS, PresetService, check_request

# Fields a stylize request may carry. `prompt` is `subject` by another name (for front doors that only know
# prompts); `init_image` is how `gen.submit` names the photo.
STYLIZE_FIELDS = ("kind", "preset", "subject", "prompt", "seed", "photo_of", "public", "init_image")
# The engine stretches a photo to the generation's size; past 4:1 a ControlNet sees a smear, and the other
# side would fall under the engine's minimum. Panoramas are cropped first.
MAX_PHOTO_ASPECT = 4.0
JOB_ID_MAX_CHARS = 32


class StylizeParser:
    def __init__(self, presets: PresetService, records: JobRecords, screen: PromptScreen | None,
                 executors: Executors, settings: Settings):
        self._presets = presets
        self._records = records
        self._screen = screen
        self._executors = executors
        self._settings = settings

    async def parse(self, params: dict[str, Any], photo: bytes | None, *, owner_id: int | None) -> JobSpec:
        """A stylize request checked and resolved into the generation a worker runs."""
        unknown = set(params) - set(STYLIZE_FIELDS)
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
        subject = _subject(params)
        seed = params.get("seed")
        photo_of = params.get("photo_of")
        stored_sha = None
        if photo_of is not None:
            if photo:
                raise InvalidInput("Send a photo or `photo_of` (a photo you sent before), not both.",
                                   code="invalid_photo")
            stored_sha, (width, height) = await self._earlier_photo(photo_of, owner_id)
        else:
            width, height = await self.check_photo(photo)
        preset = await self._presets.resolve(params.get("preset"))
        out_width, out_height = preset.recipe.size(width, height, preset.native_side_px)
        try:
            request = preset.recipe.request(subject=subject, width=out_width, height=out_height,
                                            photo=photo or PLACEHOLDER_PHOTO, seed=seed)
        except TypeError as exc:  # a stored unit that no longer fits the engine's ControlUnit
            raise InvalidInput(f"The style's ControlNet units do not fit: {exc}.", code="preset_unavailable") from None
        check_request(request, self._presets.registry, self._screen)
        request = request.with_seed()
        settings = {
            "mode": request.kind, "model": request.model, "prompt": request.prompt,
            "negative_prompt": request.negative_prompt, "steps": request.steps, "guidance": request.guidance,
            "width": request.width, "height": request.height, "seed": request.seed, "sampler": request.sampler,
            "batch": request.batch, "strength": request.strength, "loras": [list(pair) for pair in request.loras],
            "controls": [unit.settings() for unit in request.controls],
            "preset": preset.name, "preset_id": preset.id, "preset_title": preset.title_en, "subject": subject,
            "photo_width": width, "photo_height": height,
        }
        return JobSpec(kind=STYLIZE_KIND, model=request.model, settings=settings,
                       image=bytes(photo) if photo else None, image_sha256=stored_sha)

    async def check_photo(self, photo: bytes | None) -> tuple[int, int]:
        """A photo's upright (width, height), or a clear error: none, too large, unreadable, too long a strip."""
        if not isinstance(photo, (bytes, bytearray)) or not photo:
            raise InvalidInput("Send a photo: the body is empty.", code="not_an_image")
        limit = self._settings.stylize_max_upload_bytes
        if len(photo) > limit:
            raise PayloadTooLarge(f"The photo is {len(photo):,} bytes; at most {limit:,} are accepted.")
        # The header only: the worker decodes. A decompression bomb or a 30,000 px strip stops here.
        width, height = await self._executors.run_cpu(upright_size, bytes(photo))
        if max(width, height) > MAX_PHOTO_ASPECT * min(width, height):
            raise InvalidInput(f"The photo is {width}×{height}: more than {MAX_PHOTO_ASPECT:g} times as long as it "
                               f"is wide. Crop it first.", code="photo_too_wide")
        return width, height

    async def _earlier_photo(self, job_id: Any, owner_id: int | None) -> tuple[str, tuple[int, int]]:
        """The photo of one of the caller's own stylize jobs: its blob and upright size, read from the row."""
        job = await self._records.get(job_id) if isinstance(job_id, str) and len(job_id) <= JOB_ID_MAX_CHARS else None
        if job is None or job.owner_id != owner_id or job.kind != STYLIZE_KIND or not job.init_image_sha256:
            raise InvalidInput("`photo_of` must be the id of one of your own stylize jobs.", code="unknown_photo")
        settings = json.loads(job.settings)
        return job.init_image_sha256, (settings["photo_width"], settings["photo_height"])


def _subject(params: dict[str, Any]) -> str:
    subject = params.get("subject", params.get("prompt"))
    if subject is None:
        return ""
    if not isinstance(subject, str):
        raise InvalidInput("`subject` must be text.", code="invalid_prompt")
    if len(subject) > SUBJECT_MAX_CHARS:
        raise InvalidInput(f"`subject` is {len(subject)} characters; at most {SUBJECT_MAX_CHARS} are taken "
                           f"(the style adds the rest).", code="prompt_too_long")
    return subject.strip()
