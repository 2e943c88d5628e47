"""Collaborative prompt sessions over HTTP: create, invite, members, renders.

The document itself travels on the WebSocket (topic ``collab:<id>``, op ``collab.update``, at the end).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictInt, StrictStr

from handlers.base import APIHandler
from server.collab.service import CollabService
from server.ids import parse_id
from server.realtime import OpCall, op

SESSION_ID = r"([0-9a-f]{32})"


class CreateBody(BaseModel):
    """A new session's title and first document (the values are checked as the document's own)."""

    title: StrictStr | None = None
    prompt: StrictStr | None = None
    negative_prompt: StrictStr | None = None
    settings: dict[str, Any] | None = None


class InviteBody(BaseModel):
    role: StrictStr
    expires_in_secs: StrictInt | None = None
    max_uses: StrictInt | None = None


class CollabHandler(APIHandler):
    @property
    def collab(self) -> CollabService:
        return self.runtime.collab


class SessionsHandler(CollabHandler):
    async def post(self) -> None:
        """Create a session (I own it), its document seeded from `prompt`, `negative_prompt`, `settings`."""
        user = self.require_user().user
        self.write_json({"session": await self.collab.create(user, self.parse(CreateBody).model_dump(
            exclude_unset=True))}, status=201)

    async def get(self) -> None:
        """The sessions I belong to, newest first."""
        user = self.require_user().user
        self.write_json({"sessions": await self.collab.list_mine(user)})


class SessionHandler(CollabHandler):
    async def get(self, session_id: str) -> None:
        """The session, my role, its members, its renders and the document's current values."""
        user = self.require_user().user
        self.write_json(await self.collab.describe(user, session_id))

    async def delete(self, session_id: str) -> None:
        """Close the session (owner only)."""
        user = self.require_user().user
        self.write_json({"session": await self.collab.close(user, session_id)})


class InvitesHandler(CollabHandler):
    async def post(self, session_id: str) -> None:
        """A new invitation link for `role` (editor or viewer), `expires_in_secs?`, `max_uses?` (owner only)."""
        user = self.require_user().user
        body = self.parse(InviteBody)
        invite = await self.collab.invite(user, session_id, body.role, expires_in_secs=body.expires_in_secs,
                                          max_uses=body.max_uses)
        self.write_json({"invite": invite}, status=201)

    async def get(self, session_id: str) -> None:
        """The invitations that still admit someone, without their secrets (owner only)."""
        user = self.require_user().user
        self.write_json({"invites": await self.collab.invites(user, session_id)})


class InviteHandler(CollabHandler):
    async def delete(self, session_id: str, invite_id: str) -> None:
        """Revoke an invitation (owner only)."""
        user = self.require_user().user
        await self.collab.revoke_invite(user, session_id, invite_id)
        self.set_status(204)
        self.finish()


class AcceptInviteHandler(CollabHandler):
    async def post(self, token: str) -> None:
        """Join the session the invitation names, with its role."""
        user = self.require_user().user
        self.write_json(await self.collab.accept(user, token))


class MemberHandler(CollabHandler):
    async def delete(self, session_id: str, user_id: str) -> None:
        """Remove a member (owner only); their sockets leave the session at once."""
        user = self.require_user().user
        await self.collab.remove_member(user, session_id, parse_id(user_id, "user_id"))
        self.set_status(204)
        self.finish()


class RendersHandler(CollabHandler):
    async def post(self, session_id: str) -> None:
        """Render the document as it is now (editors); 202 with the render and its job."""
        user = self.require_user().user
        self.write_json(await self.collab.render(user, session_id), status=202)


class RestoreHandler(CollabHandler):
    async def post(self, session_id: str, render_id: str) -> None:
        """Put a render's prompt and settings back into the document, as an edit everyone sees."""
        user = self.require_user().user
        self.write_json(await self.collab.restore(user, session_id, render_id))


class UpdateArgs(BaseModel):
    session: Any = None  # the service checks the id and the member's role
    data: Any = None  # y-protocols bytes, parsed strictly by server/collab/protocol.py


@op("collab.update", UpdateArgs, signed_in=False)
async def collab_update(call: OpCall[UpdateArgs]) -> dict[str, Any] | None:
    """A y-protocols message (sync, update, awareness) for a session the socket watches.

    Keystrokes are many: only a frame that asks (with a ref) gets an ack, sent once the edit is stored."""
    confirm = call.ref is not None
    session = call.args.session
    for data in await call.services.collab.receive(call.socket, session, call.args.data, confirm=confirm):
        call.socket.emit({"type": "collab.sync", "topic": f"collab:{session}", "session": session, "data": data})
    return {"type": "ack"} if confirm else None


default_handlers = [
    (r"/api/collab/sessions", SessionsHandler),
    (rf"/api/collab/sessions/{SESSION_ID}", SessionHandler),
    (rf"/api/collab/sessions/{SESSION_ID}/invites", InvitesHandler),
    (rf"/api/collab/sessions/{SESSION_ID}/invites/([0-9a-f]{{64}})", InviteHandler),
    (rf"/api/collab/sessions/{SESSION_ID}/members/([0-9]{{1,19}})", MemberHandler),
    (rf"/api/collab/sessions/{SESSION_ID}/renders", RendersHandler),
    (rf"/api/collab/sessions/{SESSION_ID}/renders/([0-9a-f]{{32}})/restore", RestoreHandler),
    (r"/api/collab/invites/([A-Za-z0-9_\-]{8,64})/accept", AcceptInviteHandler),
]
socket_ops = [collab_update]
