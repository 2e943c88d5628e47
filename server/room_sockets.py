"""What a socket joining or leaving a chat room does: presence, kept fresh while the socket stays.

Registered as the `room` topic kind's join/leave hooks, so a connection knows nothing of
rooms. A joining socket gets the room's presence at once; a signed-in one is announced
and refreshed (one loop for all of a socket's rooms, jittered so thousands of sockets
opened together do not refresh together) until it leaves or goes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from server.chat import ChatService
from server.presence import PRESENCE_REFRESH_SECS
from server.topics import TopicPolicy


def wire_rooms(topics: TopicPolicy, chat: ChatService) -> None:
    """`room:<name>` topics: readable by whom the chat service says, with presence while watched."""
    rooms = RoomSockets(chat)
    topics.register("room", chat.may_read, joined=rooms.joined, left=rooms.left)


class RoomSockets:
    def __init__(self, chat: ChatService) -> None:
        self._chat = chat
        self._rooms: dict[Any, set[str]] = {}  # socket -> rooms it is present in
        self._refreshers: dict[Any, asyncio.Task] = {}

    async def joined(self, socket: Any, room: str) -> None:
        socket.emit({"type": "presence", "topic": f"room:{room}", "users": await self._chat.present_users(room)})
        if socket.principal is None:
            return
        await self._chat.join(room, socket.principal.user, socket.id)
        self._rooms.setdefault(socket, set()).add(room)
        if socket not in self._refreshers:
            self._refreshers[socket] = asyncio.create_task(self._refresh(socket), name=f"presence-{socket.id}")

    async def left(self, socket: Any, room: str) -> None:
        if socket.principal is None:
            return
        rooms = self._rooms.get(socket)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms[socket]
                task = self._refreshers.pop(socket, None)
                if task is not None:
                    task.cancel()
        await self._chat.leave(room, socket.principal.user, socket.id)

    async def _refresh(self, socket: Any) -> None:
        while socket in self._rooms and not socket.closed:
            await asyncio.sleep(PRESENCE_REFRESH_SECS * random.uniform(0.8, 1.0))
            for room in list(self._rooms.get(socket, ())):
                await self._chat.refresh_presence(room, socket.principal.user, socket.id)
