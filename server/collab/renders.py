"""A session's strip of renders: each one a normal job plus the document that made it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import NotFound
from server.store.collab_tables import CollabMember, CollabRender
from server.store.models import User, iso
from server.users import public_user

STRIP_MAX = 50


def render_json(render: CollabRender, by: User | None = None) -> dict[str, Any]:
    return {"id": render.id, "session": render.session_id, "job": render.job_id,
            "by": public_user(by) if by is not None else {"id": render.created_by},
            "snapshot": json.loads(render.snapshot),
            "created_at": iso(render.created_at)}


class RenderLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions

    async def add(self, session_id: str, job_id: str, by: User, snapshot: dict[str, Any]) -> dict[str, Any]:
        render = CollabRender(id=uuid.uuid4().hex, session_id=session_id, job_id=job_id, created_by=by.id,
                              snapshot=json.dumps(snapshot, ensure_ascii=False))
        async with self._db() as db:
            db.add(render)
            await db.commit()
        return render_json(render, by)

    async def strip(self, session_id: str) -> list[dict[str, Any]]:
        """The latest renders, newest first."""
        async with self._db() as db:
            rows = (await db.execute(select(CollabRender, User).join(User, User.id == CollabRender.created_by)
                                     .where(CollabRender.session_id == session_id)
                                     .order_by(CollabRender.created_at.desc()).limit(STRIP_MAX))).all()
        return [render_json(render, user) for render, user in rows]

    async def get(self, session_id: str, render_id: str) -> CollabRender:
        async with self._db() as db:
            render = await db.get(CollabRender, render_id)
        if render is None or render.session_id != session_id:
            raise NotFound(f"No render {render_id} in this session.")
        return render

    async def member_may_watch(self, user_id: int, job_id: str) -> bool:
        """Whether the user belongs to a session that rendered this job."""
        async with self._db() as db:
            found = await db.scalar(
                select(CollabRender.id).join(CollabMember, CollabMember.session_id == CollabRender.session_id)
                .where(CollabRender.job_id == job_id, CollabMember.user_id == user_id).limit(1))
        return found is not None
