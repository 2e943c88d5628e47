"""Follows, notifications, reports and the moderators' queue."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictStr

from handlers.base import APIHandler
from server.ids import parse_id


def _cursor(value: str | None) -> int | None:
    return parse_id(value, "before") if value else None


class FollowHandler(APIHandler):
    async def put(self, username: str) -> None:
        await self._set(username, True)

    async def delete(self, username: str) -> None:
        await self._set(username, False)

    async def _set(self, username: str, following: bool) -> None:
        follower = self.require_user().user
        followee = await self.users.get_by_username(username)
        self.write_json(await self.runtime.community.follows.set_following(follower, followee, following))


class NotificationsHandler(APIHandler):
    async def get(self) -> None:
        """Newest first, with the unread count."""
        user = self.require_user().user
        page, unread, next_cursor = await self.runtime.community.notifications.page(
            user, before=_cursor(self.get_query_argument("before", None)))
        self.write_json({"notifications": page, "unread": unread, "next_cursor": next_cursor})


class ReadBody(BaseModel):
    ids: list[Any] | None = None  # ids are parsed by the one rule for ids (server/ids.py)


class ReportBody(BaseModel):
    kind: StrictStr
    target: Any = None  # an id (a number, or its digits as text), parsed by the one rule for ids
    reason: StrictStr
    details: StrictStr = ""


class NotificationsReadHandler(APIHandler):
    async def post(self) -> None:
        """Mark `ids` (or, without them, all) as read."""
        user = self.require_user().user
        unread = await self.runtime.community.notifications.mark_read(user, self.parse(ReadBody).ids)
        self.write_json({"unread": unread})


class ReportsHandler(APIHandler):
    async def post(self) -> None:
        """Report a post, a chat message or a model; a second report of the same thing is the first."""
        user = self.require_user().user
        body = self.parse(ReportBody)
        report, created = await self.runtime.community.moderation.report(
            user, body.kind, body.target, body.reason, body.details)
        self.write_json({"report": report}, status=201 if created else 200)


class ModerationQueueHandler(APIHandler):
    async def get(self) -> None:
        """Reported things for moderators, most recently reported first."""
        user = self.require_user().user
        items, next_cursor = await self.runtime.community.moderation.queue(
            user, status=self.get_query_argument("status", "open"),
            before=_cursor(self.get_query_argument("before", None)))
        self.write_json({"items": items, "next_cursor": next_cursor})


class ModerationActionHandler(APIHandler):
    async def post(self, kind: str, target: str, action: str) -> None:
        """hide, restore or dismiss one reported thing."""
        closed = await self.runtime.community.moderation.act(self.require_user().user, kind, target, action)
        self.write_json({"kind": kind, "target": target, "action": action, "reports_closed": closed})


default_handlers = [
    (r"/api/users/([a-zA-Z0-9_]{1,32})/follow", FollowHandler),
    (r"/api/notifications", NotificationsHandler),
    (r"/api/notifications/read", NotificationsReadHandler),
    (r"/api/reports", ReportsHandler),
    (r"/api/moderation/reports", ModerationQueueHandler),
    (r"/api/moderation/([a-z]{1,16})/([^/]{1,64})/(hide|restore|dismiss)", ModerationActionHandler),
]
