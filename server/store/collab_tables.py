"""Collaborative prompt sessions: members, persisted CRDT updates and renders."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import MYSQL_TABLE_ARGS, Base, BigId, Timestamp, utcnow



class _FromHex(FunctionElement):
    """``UNHEX(:value)`` on MySQL, the bare value elsewhere (see ``UpdateBytes``)."""

    inherit_cache = True
    type = LargeBinary()


@compiles(_FromHex)
def _plain_value(element: _FromHex, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_FromHex, "mysql")
def _unhex_value(element: _FromHex, compiler: Any, **kw: Any) -> str:
    return f"UNHEX({compiler.process(element.clauses, **kw)})"


class UpdateBytes(TypeDecorator):
    """Binary CRDT updates. MySQL's BLOB stops at 64 KiB and a compacted snapshot may be larger,
    hence MEDIUMBLOB there. On MySQL the bytes travel as hex text into UNHEX(): aiomysql 0.3.2
    cannot send bytes parameters with PyMySQL 1.2 (it calls a helper PyMySQL replaced by a string)."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(mysql.MEDIUMBLOB() if dialect.name == "mysql" else LargeBinary())

    def bind_expression(self, bindvalue: Any) -> Any:
        return _FromHex(bindvalue)

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "mysql":
            return super().bind_processor(dialect)
        # Replaces (not precedes) the driver's Binary() wrapping, which would turn the text back into bytes.
        return lambda value: None if value is None else bytes(value).hex()


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
    """An invitation link; only the sha256 of its secret is stored, as for API tokens. It admits people until
    it expires, is used ``max_uses`` times (null: no limit) or is revoked."""

    __tablename__ = "collab_invites"
    __table_args__ = (Index("ix_collab_invites_session", "session_id"), MYSQL_TABLE_ARGS)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class CollabRemoval(Base):
    """When the owner last removed someone: invitations made before then no longer admit that person."""

    __tablename__ = "collab_removals"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    removed_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)


class CollabUpdate(Base):
    """A Yjs update as received (``kind`` update) or the merge of earlier ones (``kind`` snapshot)."""

    __tablename__ = "collab_updates"
    __table_args__ = (Index("ix_collab_updates_session", "session_id", "id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("collab_sessions.id", ondelete="CASCADE"),
                                            nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    data: Mapped[bytes] = mapped_column(UpdateBytes(), nullable=False)
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
