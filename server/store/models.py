"""The one schema, shared by SQLite and MySQL/MariaDB.

Times are naive UTC (``utcnow()``): SQLite keeps no zone and MySQL's DATETIME
none either, so storing one convention avoids silent conversions.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY, MySQL wants BIGINT for room to grow.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# MySQL's DATETIME keeps whole seconds unless told otherwise; ordering by time needs microseconds.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

# utf8mb4 so emoji and other 4-byte characters survive on MySQL/MariaDB.
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(value: dt.datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with a ``Z``, for JSON."""
    if value is None:
        return None
    if value.tzinfo is None:  # as stored: no offset to replace (every chat event is dated this way)
        return value.isoformat() + "Z"
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Stored lower-case; uniqueness is therefore case-insensitive on every backend.
    username: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    display_name: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    bio: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # sha256 of the re-encoded avatar in the blob store.
    avatar_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    is_moderator: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The checkpoint the A1111 API uses for this user when a request names none (`POST /sdapi/v1/options`).
    sdapi_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


class BrowserSession(Base):
    """A signed-in browser. The cookie carries a random secret; only its sha256 is stored."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"), MYSQL_TABLE_ARGS)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    user_agent: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    ip: Mapped[str] = mapped_column(String(45), nullable=False, default="")


class ApiToken(Base):
    """A bearer token for scripts; the secret is shown once and stored as its sha256."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # The first characters of the secret, so people can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class Room(Base):
    """A chat room: named rooms (``lobby``) and, later, one beside every post (``post:<id>``)."""

    __tablename__ = "rooms"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    # The room topic's seq: bumped in the same transaction as the change it numbers.
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # `/imagine` turned off here by the room's owner or a moderator.
    imagine_off: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # Photos may be attached here (`/stylize`): off until the room's owner or a moderator allows them, since a
    # photo is often of people, and a room's owner should choose to make their room a place for that.
    uploads_on: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_room_seq", "room_id", "seq"),
        Index("ix_messages_room_id", "room_id", "id"),
        # A retried send (same client ref) is stored once.
        Index("uq_messages_client_ref", "room_id", "author_id", "client_ref", unique=True),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    room_id: Mapped[int] = mapped_column(BigId, ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False)
    author_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # seq of the message's latest change (send, edit or delete); created_seq of its sending.
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    # Space-separated lower-case usernames mentioned with @name.
    mentions: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    client_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    edited_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    # Set by a moderator: the message is gone for everyone but its author and moderators.
    hidden_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    # The job a room command started (`/imagine`): the message shows it rendering, then its image.
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class GenerationJob(Base):
    """A generation job: its settings, its state, and what it produced."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_status", "status"),
        # Live's queries: the public jobs running now, and the newest finished ones (server/live.py).
        Index("ix_jobs_public_status_finished", "public", "status", "finished_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued running done failed cancelled
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    # The request as JSON (prompt, sizes, sampler...), with the seed actually used once known.
    settings: Mapped[str] = mapped_column(Text, nullable=False)
    # sha256 of the uploaded image in the blob store (an img2img init image, an art photo), so any worker,
    # at any time, can run the job from its row.
    init_image_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The queue line it waits in when narrower than its owner's (server.jobs.queue.Lane: one Discord user of
    # the bot account), kept so a job put back from this row waits, and is capped, where it did.
    queue_lane: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    timings: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    # The worker running the job and how many times one started it: a worker's writes about a job
    # are conditional on both, so a worker that lost the job (presumed dead) cannot finish it too.
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class GeneratedImage(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_job", "job_id"), Index("ix_images_owner", "owner_id", "id"), MYSQL_TABLE_ARGS)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    png_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    thumb_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The A1111 `parameters` text, also inside the PNG.
    parameters: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class DiscordLink(Base):
    """A Discord user who linked an account here (`/link <code>`): their commands run as that user."""

    __tablename__ = "discord_links"
    __table_args__ = (Index("ix_discord_links_user", "user_id"), MYSQL_TABLE_ARGS)

    discord_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # a snowflake, as Discord sends it
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
