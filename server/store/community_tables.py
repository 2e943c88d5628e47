"""The community's tables: posts, likes, follows, notifications and reports."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import MYSQL_TABLE_ARGS, Base, BigId, Timestamp, utcnow


class Post(Base):
    """A published artwork: one or more images of a finished job, with the settings that made them."""

    __tablename__ = "posts"
    __table_args__ = (
        # Keyset pagination: every gallery order ends in the id, so a cursor is exact.
        Index("ix_posts_hidden_id", "hidden", "id"),
        Index("ix_posts_hidden_likes", "hidden", "like_count", "id"),
        Index("ix_posts_hidden_created", "hidden", "created_at"),
        Index("ix_posts_owner", "owner_id", "id"),
        Index("ix_posts_model", "model", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Space-separated lower-case tags, also rows of post_tags for filtering.
    tags: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    nsfw: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    # The job's settings as JSON, with the seed actually used: what "Remix" fills in.
    settings: Mapped[str] = mapped_column(Text, nullable=False)
    cover_image_id: Mapped[str] = mapped_column(String(32), nullable=False)
    cover_width: Mapped[int] = mapped_column(Integer, nullable=False)
    cover_height: Mapped[int] = mapped_column(Integer, nullable=False)
    # A metadata-free copy of a stylize job's photo, present only when the owner chose to show it.
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    like_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    hidden: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow, onupdate=utcnow)


class PostImage(Base):
    __tablename__ = "post_images"
    __table_args__ = (
        # An image is published once; a second post of it would split its likes and comments.
        Index("uq_post_images_image", "image_id", unique=True),
        MYSQL_TABLE_ARGS,
    )

    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    image_id: Mapped[str] = mapped_column(String(32), ForeignKey("images.id", ondelete="CASCADE"), nullable=False)


class PostTag(Base):
    __tablename__ = "post_tags"
    __table_args__ = (Index("ix_post_tags_post", "post_id"), MYSQL_TABLE_ARGS)

    tag: Mapped[str] = mapped_column(String(40), primary_key=True)
    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)


class Like(Base):
    __tablename__ = "likes"
    __table_args__ = (Index("ix_likes_user", "user_id", "post_id"), MYSQL_TABLE_ARGS)

    # The primary key is what makes liking twice count once.
    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class Follow(Base):
    __tablename__ = "follows"
    __table_args__ = (Index("ix_follows_followee", "followee_id", "follower_id"), MYSQL_TABLE_ARGS)

    follower_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    followee_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user", "user_id", "id"),
        Index("ix_notifications_unread", "user_id", "read_at"),
        # A message's notifications follow its edits and deletion.
        Index("ix_notifications_message", "message_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # like follow mention message
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    post_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), nullable=True)
    room: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    text: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # People a grouped notification stands for ("Ana and 3 others liked your post": 4); ``actor_id`` is the latest.
    actor_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    read_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class NoticeOnce(Base):
    """Someone was told once that ``actor`` liked a post of theirs (``subject``: the post) or followed them
    (``subject`` 0): unliking and liking again, or unfollowing and following again, tells nobody twice."""

    __tablename__ = "notices_once"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    actor_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Report(Base):
    """Someone's report of a post, a message or a model, waiting for a moderator."""

    __tablename__ = "reports"
    __table_args__ = (
        # Reporting the same thing twice keeps one report.
        Index("uq_reports_reporter_target", "reporter_id", "target_kind", "target_id", unique=True),
        Index("ix_reports_status", "status", "id"),
        Index("ix_reports_target", "target_kind", "target_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reporter_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    target_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # post message model
    target_id: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    details: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")  # open hidden dismissed
    resolved_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
