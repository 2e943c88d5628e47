"""Stylize's tables: style presets (moderators define them) and share links to a result."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import MYSQL_TABLE_ARGS, Base, BigId, Timestamp, utcnow


class Preset(Base):
    """A named bundle of generation settings a photo is rendered with (checkpoint, LoRAs, ControlNet units...)."""

    __tablename__ = "presets"
    __table_args__ = (Index("ix_presets_retired", "retired_at", "position", "id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A stable handle for scripts and bots (`preset=pixel-hero`); lower-case letters, digits and -.
    name: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    title_en: Mapped[str] = mapped_column(String(80), nullable=False)
    title_zh: Mapped[str] = mapped_column(String(80), nullable=False, default="")
    description_en: Mapped[str] = mapped_column(Text, nullable=False, default="")
    description_zh: Mapped[str] = mapped_column(Text, nullable=False, default="")
    checkpoint: Mapped[str] = mapped_column(String(128), nullable=False)
    # JSON: [{name, weight}] and the ControlNet units without their image ({model, preprocessor, scale, ...}).
    loras: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    controls: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    # The user's words go where `{subject}` is; without it they are appended.
    prompt_template: Mapped[str] = mapped_column(Text, nullable=False, default="{subject}")
    negative_prompt: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # None: txt2img (the photo guides only through the ControlNet units); else img2img at this strength.
    strength: Mapped[float | None] = mapped_column(Float, nullable=True)
    steps: Mapped[int] = mapped_column(Integer, nullable=False)
    guidance: Mapped[float] = mapped_column(Float, nullable=False)
    sampler: Mapped[str] = mapped_column(String(32), nullable=False)
    # Size rule: the photo's aspect at about side² pixels; None: the checkpoint's native side.
    side_px: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Cards are shown by position, then id.
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cover_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class Share(Base):
    """A link to one image anyone may open (`/s/<id>`), without making the job or its other images public."""

    __tablename__ = "shares"
    __table_args__ = (
        # Sharing an image again gives the same link.
        Index("uq_shares_image", "image_id", unique=True),
        Index("ix_shares_owner", "owner_id", "created_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # random, unguessable
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    image_id: Mapped[str] = mapped_column(String(32), ForeignKey("images.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str] = mapped_column(String(120), nullable=False)
    # A metadata-free copy of the job's photo, present only when the owner chose to show it.
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
