"""Collaborative prompt sessions: members, persisted CRDT updates and renders."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import MYSQL_TABLE_ARGS, Base, BigId, Timestamp, utcnow

# MySQL's BLOB stops at 64 KiB; a compacted snapshot of a long-lived session may be larger.
UpdateBytes = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql")


class CollabSession(Base):
    """A shared prompt document and who made it; ``closed_at`` set once the owner closes it."""

    __tablename__ = "collab_sessions"
    __table_args__ = (Index("ix_collab_sessions_owner", "owner_id", "created_at"), MYSQL_TABLE_ARGS)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str] = mapped_column(String(120), nullable=False, default="")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class CollabMember(Base):
    """One person's role in a session: owner, editor or viewer. Removal deletes the row."""

    __tablename__ = "collab_members"
    __table_args__ = (Index("ix_collab_members_user", "user_id"), MYSQL_TABLE_ARGS)

    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    joined_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class CollabInvite(Base):
    """An invitation link; only the sha256 of its secret is stored, as for API tokens."""

    __tablename__ = "collab_invites"
    __table_args__ = (Index("ix_collab_invites_session", "session_id"), MYSQL_TABLE_ARGS)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class CollabUpdate(Base):
    """A Yjs update as received (``kind`` update) or the merge of earlier ones (``kind`` snapshot)."""

    __tablename__ = "collab_updates"
    __table_args__ = (Index("ix_collab_updates_session", "session_id", "id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    data: Mapped[bytes] = mapped_column(UpdateBytes, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class CollabRender(Base):
    """A job made from the session's document, with the document as it was (JSON) to restore later."""

    __tablename__ = "collab_renders"
    __table_args__ = (Index("ix_collab_renders_session", "session_id", "created_at"),
                      Index("ix_collab_renders_job", "job_id"), MYSQL_TABLE_ARGS)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            nullable=False)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    snapshot: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
