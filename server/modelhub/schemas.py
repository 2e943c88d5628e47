"""What clients may send to the hub, validated before a service sees it."""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from server.modelhub.markdown import MAX_DESCRIPTION_CHARS
from server.text import clean_tags

KINDS = ("checkpoint", "lora", "controlnet", "vae", "embedding")
BASES = ("sd1", "sd2", "sdxl")
SORTS = ("newest", "downloads", "likes")
MAX_TAGS = 12
VERSION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FILENAME_CHARS = 200


def clean_filename(name: str) -> str:
    """A file name safe on disk and in a header: no paths, NUL, control characters or leading dots."""
    if not isinstance(name, str) or not name:
        raise ValueError("the file name is empty")
    if "\x00" in name:
        raise ValueError("the file name contains a NUL byte")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name:
        raise ValueError(f"the file name {name[:60]!r} contains a path (`/`, `\\` or `..`)")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise ValueError("the file name contains control characters")
    if name.startswith(".") or name != name.strip():
        raise ValueError("the file name starts with a dot or has surrounding spaces")
    if len(name) > MAX_FILENAME_CHARS:
        raise ValueError(f"the file name is longer than {MAX_FILENAME_CHARS} characters")
    return name


def _tags(value: list[str]) -> list[str]:
    return clean_tags(value, MAX_TAGS)  # counted as sent, repeats too, so a schema (maxItems) can say it


class NewModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    kind: str = ""
    base: str = ""
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS)
    tags: list[str] = Field(default_factory=list)
    licence: str = Field("", max_length=64)
    nsfw: StrictBool = False  # JSON true or false, not 0 or "yes"
    version: str = "v1"

    _check_tags = field_validator("tags")(lambda cls, v: _tags(v))

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value and value not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return value

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        if value and value not in BASES:
            raise ValueError(f"must be one of {', '.join(BASES)}")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_NAME_RE.match(value):
            raise ValueError("must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
        return value


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    kind: str | None = None
    base: str | None = None
    description: str | None = Field(None, max_length=MAX_DESCRIPTION_CHARS)
    tags: list[str] | None = None
    licence: str | None = Field(None, max_length=64)
    nsfw: StrictBool | None = None

    _check_tags = field_validator("tags")(lambda cls, v: None if v is None else _tags(v))
    _kind = field_validator("kind")(lambda cls, v: NewModel._kind(v) if v else v)
    _base = field_validator("base")(lambda cls, v: NewModel._base(v) if v else v)


class NewVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    notes: str = Field("", max_length=MAX_DESCRIPTION_CHARS)

    _version = field_validator("name")(lambda cls, v: NewModel._version(v))


class ListQuery(BaseModel):
    q: str = Field("", max_length=100)
    kind: str = ""
    base: str = ""
    owner: str = Field("", max_length=32)
    sort: str = "newest"
    cursor: str = Field("", max_length=200)
    limit: int = Field(24, ge=1, le=100)
    nsfw: bool = False

    @field_validator("sort")
    @classmethod
    def _sort(cls, value: str) -> str:
        if value not in SORTS:
            raise ValueError(f"must be one of {', '.join(SORTS)}")
        return value

    _kind = field_validator("kind")(lambda cls, v: NewModel._kind(v))
    _base = field_validator("base")(lambda cls, v: NewModel._base(v))
