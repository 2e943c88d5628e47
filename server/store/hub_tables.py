"""The model hub's tables: models, their versions and files, and uploads in progress."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import MYSQL_TABLE_ARGS, Base, BigId, Timestamp, utcnow


class HubModel(Base):
    """A shared model: one name under its owner (`owner/slug` is its Hugging Face-style repo id)."""

    __tablename__ = "hub_models"
    __table_args__ = (
        Index("uq_hub_models_owner_slug", "owner_id", "slug", unique=True),
        Index("ix_hub_models_created", "created_at", "id"),
        Index("ix_hub_models_downloads", "downloads", "id"),
        Index("ix_hub_models_likes", "likes", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    slug: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # checkpoint lora controlnet vae embedding; "" until declared or detected from the first file.
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    # sd1 sd2 sdxl; "" when unknown.
    base: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Space-separated lower-case tags, searched with LIKE.
    tags: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    licence: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    nsfw: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Hidden by a moderator: gone from lists, pages and downloads for all but its owner and moderators.
    hidden: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Flushed in batches from the counters in Redis (or in-process).
    downloads: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    likes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # A preview image (blob sha256), shown as the thumbnail in lists.
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


class HubVersion(Base):
    __tablename__ = "hub_versions"
    __table_args__ = (Index("uq_hub_versions_model_name", "model_id", "name", unique=True), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(BigId, ForeignKey("hub_models.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class HubFile(Base):
    """A validated .safetensors file of a version; the bytes are the blob named by `sha256`."""

    __tablename__ = "hub_files"
    __table_args__ = (
        Index("uq_hub_files_version_name", "version_id", "filename", unique=True),
        Index("ix_hub_files_sha256", "sha256"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(BigId, ForeignKey("hub_versions.id", ondelete="CASCADE"), nullable=False)
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # What the tensor names and shapes say it is.
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    base: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    tensor_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # `__metadata__` as a JSON object of sanitised strings.
    metadata_json: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class HubUpload(Base):
    """A tus upload in progress: the bytes so far are in a temporary file named by `id`."""

    __tablename__ = "hub_uploads"
    __table_args__ = (Index("ix_hub_uploads_expires", "expires_at"), MYSQL_TABLE_ARGS)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    version_id: Mapped[int] = mapped_column(BigId, ForeignKey("hub_versions.id", ondelete="CASCADE"), nullable=False)
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    length: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)


class HubLike(Base):
    __tablename__ = "hub_likes"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    model_id: Mapped[int] = mapped_column(BigId, ForeignKey("hub_models.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
