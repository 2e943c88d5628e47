"""Chat history over HTTP (the live part is on the WebSocket)."""

from __future__ import annotations

from handlers.base import APIHandler
from server.ids import parse_id


class RoomMessagesHandler(APIHandler):
    async def get(self, room: str) -> None:
        """Messages newest first; `before` is the cursor from the previous page."""
        before = self.get_query_argument("before", None)
        messages, next_cursor = await self.runtime.chat.history(
            self.principal.user if self.principal else None, room,
            before=parse_id(before, "before") if before else None,
            limit=parse_id(self.get_query_argument("limit", "50"), "limit"),
        )
        self.write_json({"messages": messages, "next_cursor": next_cursor})


class RoomPresenceHandler(APIHandler):
    async def get(self, room: str) -> None:
        """Who is in the room now (rooms the viewer may read)."""
        viewer = self.principal.user if self.principal else None
        self.write_json({"users": await self.runtime.chat.presence(viewer, room)})


default_handlers = [
    (r"/api/rooms/([^/]{1,64})/messages", RoomMessagesHandler),
    (r"/api/rooms/([^/]{1,64})/presence", RoomPresenceHandler),
]
