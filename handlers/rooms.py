"""Chat: history over HTTP, and the socket ops that send, edit, delete and say one is typing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictBool

from handlers.base import APIHandler
from server.chat import check_room_name
from server.errors import InvalidInput
from server.ids import parse_id
from server.realtime import MAX_REF_CHARS, Later, OpCall, op


class RoomMessagesHandler(APIHandler):
    async def get(self, room: str) -> None:
        """Messages newest first; `before` is the cursor from the previous page."""
        before = self.get_query_argument("before", None)
        messages, next_cursor = await self.runtime.chat.history(
            self.viewer, room,
            before=parse_id(before, "before") if before else None,
            limit=parse_id(self.get_query_argument("limit", "50"), "limit"),
        )
        self.write_json({"messages": messages, "next_cursor": next_cursor})


class RoomPresenceHandler(APIHandler):
    async def get(self, room: str) -> None:
        """Who is in the room now (rooms the viewer may read)."""
        viewer = self.viewer
        self.write_json({"users": await self.runtime.chat.presence(viewer, room)})


class RoomSettingsBody(BaseModel):
    imagine: StrictBool | None = None
    uploads: StrictBool | None = None


class RoomHandler(APIHandler):
    async def get(self, room: str) -> None:
        """The room's settings (`imagine`: may `/imagine` be used here; `uploads`: may photos be attached, for
        `/stylize`) and whether the viewer may change them."""
        self.write_json({"room": await self.runtime.imagine.describe(self.viewer, room)})

    async def patch(self, room: str) -> None:
        """Turn `/imagine` or photo uploads on or off (the room's owner or a moderator)."""
        user = self.require_user().user
        body = self.parse(RoomSettingsBody)
        self.write_json({"room": await self.runtime.imagine.change(user, room, imagine=body.imagine,
                                                                   uploads=body.uploads)})


class RoomPhotosHandler(APIHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.stylize_max_upload_bytes

    async def post(self, room: str) -> None:
        """Attach a photo (raw image/* body) for a `/stylize` in a room that takes uploads; 201 with its reference."""
        user = self.require_user().user
        if self.body:
            self.require_media_type({"image/*"}, "the photo itself as the body")
        photo = await self.runtime.room_stylize.upload(user, room, self.body or None)
        self.write_json({"photo": photo}, status=201)


class RoomArgs(BaseModel):
    room: Any = None  # the name is checked by the chat service's one rule (check_room_name)


class SendArgs(RoomArgs):
    text: Any = None  # length and content are the chat service's to judge (with its own error codes)
    photo: Any = None  # a photo uploaded to the room (POST /api/rooms/<room>/photos), for `/stylize`


class EditArgs(RoomArgs):
    message: Any = None
    text: Any = None


class DeleteArgs(RoomArgs):
    message: Any = None


def subscribed_room(call: OpCall[Any]) -> str:
    """The room named by the frame, which the socket must watch (its messages come back on the topic)."""
    room = check_room_name(call.args.room)
    if not call.socket.subscribed(f"room:{room}"):
        raise InvalidInput(f"Subscribe to room:{room} first.", code="not_subscribed", data={"field": "room"})
    return room


@op("chat.send", SendArgs)
async def chat_send(call: OpCall[SendArgs]) -> Later:
    """Store a message (a retried `ref` with the same text is answered with the stored one). Acked once
    committed; the socket's next frame is read meanwhile (the messages keep their order)."""
    client_ref = str(call.ref)[:MAX_REF_CHARS] if call.ref is not None else None
    stored = await call.services.chat.accept(call.user, subscribed_room(call), call.args.text, client_ref,
                                             call.args.photo)
    return Later(stored, _acked)


def _acked(stored: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ack", "message": stored}


@op("chat.edit", EditArgs)
async def chat_edit(call: OpCall[EditArgs]) -> dict[str, Any]:
    stored = await call.services.chat.edit(call.user, subscribed_room(call), call.args.message, call.args.text)
    return {"type": "ack", "message": stored}


@op("chat.delete", DeleteArgs)
async def chat_delete(call: OpCall[DeleteArgs]) -> dict[str, Any]:
    await call.services.chat.delete(call.user, subscribed_room(call), call.args.message)
    return {"type": "ack"}


@op("typing", RoomArgs)
async def typing(call: OpCall[RoomArgs]) -> None:
    await call.services.chat.typing(subscribed_room(call), call.user)


default_handlers = [
    (r"/api/rooms/([^/]{1,64})", RoomHandler),
    (r"/api/rooms/([^/]{1,64})/messages", RoomMessagesHandler),
    (r"/api/rooms/([^/]{1,64})/presence", RoomPresenceHandler),
    (r"/api/rooms/([^/]{1,64})/photos", RoomPhotosHandler),
]
socket_ops = [chat_send, chat_edit, chat_delete, typing]
