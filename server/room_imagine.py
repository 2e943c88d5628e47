"""`/imagine <prompt>` in any chat room: a public job of the sender, shown rendering in the room.

The chat service stores the message with the job's id (`ChatService.commands`); everyone in the
room watches `job:<id>` (public, so anyone may), and whoever joins mid-render is sent the newest
preview at once (the job topic's `joined` hook). The room's owner (a post's author for the room
beside it, else whoever opened the room) or a moderator may turn the command off for that room.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from server.chat import ChatService, room_topic
from server.errors import Forbidden, InvalidInput
from server.hub import Hub
from server.imagine import imagine_params
from server.jobs import JobService
from server.store.models import Room, User

COMMAND = "imagine"


class RoomImagine:
    def __init__(self, db: async_sessionmaker[AsyncSession], chat: ChatService, jobs: JobService, hub: Hub,
                 settings: Settings):
        self._db = db
        self._chat = chat
        self._jobs = jobs
        self._hub = hub
        self._settings = settings

    def wire(self) -> None:
        """Register `/imagine` with the chat service."""
        self._chat.commands[COMMAND] = self.imagine

    async def imagine(self, author: User, room: str, prompt: str) -> str:
        """Start the public job a `/imagine` asks for (caps, fairness and screening as any job); its id."""
        if not prompt:
            raise InvalidInput("Write what to imagine: /imagine <prompt>.", code="invalid_prompt",
                               data={"field": "text"})
        await self.require_enabled(room)
        job = await self._jobs.submit(author, await imagine_params(self._settings, self._jobs, prompt))
        return job["id"]

    async def require_enabled(self, room: str, *, uploads: bool = False) -> None:
        """Raise unless the room allows its job commands (and, with ``uploads``, photos for them)."""
        switches = await self.switches(room)
        if not switches["imagine"]:
            raise Forbidden("/imagine and /stylize are turned off in this room by its owner.", code="imagine_off")
        if uploads and not switches["uploads"]:
            raise Forbidden("This room does not take photos; its owner (or a moderator) may allow them.",
                            code="uploads_off")

    async def switches(self, room: str) -> dict[str, bool]:
        """What the room allows: `imagine` (its job commands) and `uploads` (photos, for `/stylize`)."""
        async with self._db() as db:
            row = (await db.execute(select(Room.imagine_off, Room.uploads_on).where(Room.name == room))).first()
        # A room nobody has opened yet has the defaults: /imagine on, uploads off.
        return {"imagine": not row.imagine_off, "uploads": bool(row.uploads_on)} if row else \
            {"imagine": True, "uploads": False}

    async def describe(self, viewer: User | None, room: str) -> dict[str, Any]:
        """The room's settings, and whether the viewer may change them."""
        await self._chat.check_access(viewer, room)
        owner = await self._chat.room_owner(room)
        manage = viewer is not None and (viewer.is_moderator or (owner is not None and owner == viewer.id))
        return {"name": room, **await self.switches(room), "can_manage": manage, "owned": owner is not None}

    async def change(self, actor: User, room: str, *, imagine: bool | None = None,
                     uploads: bool | None = None) -> dict[str, Any]:
        """Turn `/imagine` or photo uploads on or off in a room (its owner or a moderator); told to the room at once."""
        await self._chat.check_access(actor, room)
        room_id = await self._chat.room_id(room, actor.id)
        owner = await self._chat.room_owner(room)
        if not actor.is_moderator and owner != actor.id:
            raise Forbidden("Only the room's owner or a moderator may change its settings.", code="not_owner")
        values: dict[str, bool] = {}
        if imagine is not None:
            values["imagine_off"] = not imagine
        if uploads is not None:
            values["uploads_on"] = uploads
        if values:
            async with self._db() as db:
                await db.execute(update(Room).where(Room.id == room_id).values(**values))
                await db.commit()
        switches = await self.switches(room)
        await self._hub.publish(room_topic(room), {"type": "room.settings", "room": room, **switches}, sequenced=False)
        # What `describe` would read again: the actor was just found to manage the room.
        return {"name": room, **switches, "can_manage": True, "owned": owner is not None}
