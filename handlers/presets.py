"""Style presets: everyone lists them; moderators create, edit, retire them and set their covers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from handlers.base import APIHandler
from server.moderation import require_moderator
from server.presets import PresetService
from server.store.models import User

# Immutable: the cover URL carries the digest of the bytes (`?v=`).


class LoraIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(max_length=200)
    weight: float = 1.0


class ControlIn(BaseModel):
    """A ControlNet unit without its image (the photo is the image)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str = Field(max_length=200)
    preprocessor: str = "canny"
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    low_threshold: int = 100
    high_threshold: int = 200


class PresetIn(BaseModel):
    """A preset's fields; on create the unset ones take defaults, on edit they stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(None, max_length=40)
    title_en: str | None = Field(None, max_length=200)
    title_zh: str | None = Field(None, max_length=200)
    description_en: str | None = Field(None, max_length=5000)
    description_zh: str | None = Field(None, max_length=5000)
    checkpoint: str | None = Field(None, max_length=200)
    loras: list[LoraIn] | None = Field(None, max_length=16)
    controls: list[ControlIn] | None = Field(None, max_length=16)
    prompt_template: str | None = Field(None, max_length=4000)
    negative_prompt: str | None = Field(None, max_length=4000)
    strength: float | None = None  # null: txt2img (the photo guides through the ControlNet units only)
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = Field(None, max_length=64)
    side_px: int | None = None  # null: the checkpoint's native side
    position: int | None = None
    retired: bool | None = None  # edit only


class PresetsBase(APIHandler):
    @property
    def presets(self) -> PresetService:
        return self.runtime.presets

    def moderator(self) -> User:
        """Writes are for moderators: told before the body is read."""
        user = self.require_user().user
        require_moderator(user)
        return user

    def values(self) -> dict:
        """The fields the body set (a null is a value: `strength: null` makes a txt2img preset)."""
        body = self.parse(PresetIn)
        return body.model_dump(exclude_unset=True)


class PresetsHandler(PresetsBase):
    async def get(self) -> None:
        """Every preset, each with `available` and its `problems` (`?all=1`: moderators see retired ones too)."""
        viewer = self.principal.user if self.principal else None
        presets = await self.presets.list(viewer, retired=self.get_query_argument("all", "") == "1")
        self.write_json({"presets": presets})

    async def post(self) -> None:
        """Create a preset (moderators); its models must be in the models folder."""
        user = self.moderator()
        values = self.values()
        values.pop("retired", None)
        self.write_json({"preset": await self.presets.create(user, values)}, status=201)


class PresetHandler(PresetsBase):
    async def get(self, ref: str) -> None:
        """One preset by id or name."""
        self.write_json({"preset": await self.presets.get(ref)})

    async def patch(self, ref: str) -> None:
        """Edit some fields, or retire/restore with `retired` (moderators)."""
        user = self.moderator()
        self.write_json({"preset": await self.presets.update(user, ref, self.values())})

    async def delete(self, ref: str) -> None:
        """Retire a preset (moderators): no new jobs; what was made with it stays."""
        user = self.moderator()
        self.write_json({"preset": await self.presets.retire(user, ref)})


class PresetCoverHandler(PresetsBase):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.max_avatar_bytes

    async def get(self, ref: str) -> None:
        """The cover image (WebP); immutable when asked for by its `?v=` digest."""
        digest, data = await self.presets.cover(ref)
        self.write_blob(data, digest, "image/webp", immutable=self.get_query_argument("v", None) == digest[:12],
                        shared=True)

    async def put(self, ref: str) -> None:
        """Set the cover from a raw image/* body (moderators); re-encoded without metadata."""
        user = self.moderator()
        self.require_media_type({"image/*"}, "the image itself")
        self.write_json({"preset": await self.presets.set_cover(user, ref, self.body)})


PRESET_REF = r"([a-z0-9][a-z0-9-]{0,39})"

default_handlers = [
    (r"/api/presets", PresetsHandler),
    (rf"/api/presets/{PRESET_REF}", PresetHandler),
    (rf"/api/presets/{PRESET_REF}/cover", PresetCoverHandler),
]
