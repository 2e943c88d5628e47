"""Notifications: likes, follows, mentions and messages beside one's posts.

Each is stored first (the list and its unread count survive a closed tab) and
then published on ``user:<id>``, where an open page shows it at once.

Likes and follows are told once per person (``notices_once``): unliking and liking again
tells nobody twice. Likes of one post are one notification that grows ("Ana and 3 others
liked your post"): a new liker replaces it with a newer, unread one. A message's
notifications follow it: edited, they show the new text (and a mention the edit took out is
gone); deleted or hidden, they are gone. A notification about a post carries its title, so
people read the artwork's name, never an internal room name.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import Unavailable
from server.hub import Hub
from server.ids import parse_ids
from server.store.community_tables import NoticeOnce, Notification, Post
from server.store.database import run_transaction
from server.store.models import User, iso, utcnow
from server.users import public_user

log = logging.getLogger(__name__)

KINDS = ("like", "follow", "mention", "message")
PAGE_DEFAULT = 30
PAGE_MAX = 100
TEXT_MAX_CHARS = 200


SUMMARIES = {"like": "liked your post", "follow": "followed you", "mention": "mentioned you",
             "message": "wrote in your post's room"}


def summary(kind: str, actor: User | None, count: int) -> str:
    """The notification in a sentence, for clients that do not write their own ("Ana and 3 others liked your post")."""
    who = actor.display_name or actor.username if actor else "Someone"
    others = count - 1
    if others > 0:
        who += f" and {others} other{'' if others == 1 else 's'}"
    return f"{who} {SUMMARIES.get(kind, kind)}"


def notification_json(notification: Notification, actor: User | None, post_title: str | None = None
                      ) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "from": public_user(actor) if actor else None,
        "count": notification.actor_count,
        "summary": summary(notification.kind, actor, notification.actor_count),
        "post": notification.post_id,
        "post_title": post_title,
        "room": notification.room,
        "message": notification.message_id,
        "text": notification.text,
        "read": notification.read_at is not None,
        "created_at": iso(notification.created_at),
    }


class NotificationService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub):
        self._db = sessions
        self._hub = hub

    async def notify(self, user_id: int, kind: str, actor: User, *, post_id: int | None = None,
                     room: str | None = None, message_id: int | None = None, text: str = "") -> None:
        """Store a notification for ``user_id`` and push it to their open pages."""
        if user_id == actor.id:
            return  # nobody is told about their own doings
        async with self._db() as db:
            notification = Notification(user_id=user_id, kind=kind, actor_id=actor.id, post_id=post_id, room=room,
                                        message_id=message_id, text=text[:TEXT_MAX_CHARS])
            db.add(notification)
            await db.commit()
            unread = await self._unread(db, user_id)
            title = await self._post_title(db, post_id)
        await self._publish(notification, actor, unread, post_title=title)

    async def notify_once(self, user_id: int, kind: str, actor: User, *, post_id: int | None = None,
                          text: str = "") -> None:
        """A like (of ``post_id``) or a follow, told once per person; likes of a post grow one notification."""
        if user_id == actor.id:
            return

        async def tell(db: AsyncSession) -> tuple[Notification, int | None, int] | None:
            # The recipient's row first: every notice to one person takes its locks in this order, so
            # concurrent likers queue up instead of deadlocking on the notifications' gap locks.
            await db.execute(select(User.id).where(User.id == user_id).with_for_update())
            db.add(NoticeOnce(user_id=user_id, kind=kind, subject_id=post_id or 0, actor_id=actor.id))
            try:
                await db.flush()
            except IntegrityError:
                await db.rollback()
                return None  # told before (an unlike and a like again): nothing new
            count, replaces = 1, None
            if kind == "like":
                earlier = await db.scalar(select(Notification).where(
                    Notification.user_id == user_id, Notification.kind == kind, Notification.post_id == post_id,
                ).order_by(Notification.id.desc()).limit(1))
                if earlier is not None:
                    count, replaces = earlier.actor_count + 1, earlier.id
                    await db.execute(delete(Notification).where(Notification.id == earlier.id))
            notification = Notification(user_id=user_id, kind=kind, actor_id=actor.id, post_id=post_id,
                                        text=text[:TEXT_MAX_CHARS], actor_count=count)
            db.add(notification)
            await db.commit()
            return notification, replaces, await self._unread(db, user_id)

        told = await run_transaction(self._db, tell)
        if told is not None:
            notification, replaces, unread = told
            async with self._db() as db:
                title = await self._post_title(db, post_id)
            await self._publish(notification, actor, unread, replaces=replaces, post_title=title)

    async def _publish(self, notification: Notification, actor: User, unread: int, *,
                       replaces: int | None = None, post_title: str | None = None) -> None:
        payload = notification_json(notification, actor, post_title)
        # `kind`, `room`, `message`, `from` and `text` also at the top level, as the first mention events had them;
        # `replaces`: the id of the notification this one takes the place of (a post's grouped likes).
        try:
            await self._hub.publish(f"user:{notification.user_id}", {
                "type": "notify", **payload, "notification": payload, "unread": unread, "replaces": replaces,
            })
        except Unavailable:  # stored: the list and the unread count show it; only the live push is lost
            log.warning("notification %s stored but not pushed: live updates are unavailable", notification.id)

    async def message_changed(self, message_id: int, text: str | None, mentions: list[str]) -> None:
        """A message was edited (``text``, mentioning ``mentions`` now), deleted or hidden (None): its
        notifications show the new text, and those about a message (or a mention) that is gone are dropped."""
        shown = (text or "")[:TEXT_MAX_CHARS]
        still_mentioned = {name.lower() for name in mentions}
        async with self._db() as db:
            rows = (await db.execute(
                select(Notification.id, Notification.user_id, Notification.kind, User.username)
                .join(User, User.id == Notification.user_id).where(Notification.message_id == message_id))).all()
            if not rows:
                return
            gone = [(nid, uid) for nid, uid, kind, username in rows
                    if text is None or (kind == "mention" and username.lower() not in still_mentioned)]
            kept = [(nid, uid) for nid, uid, _kind, _username in rows if (nid, uid) not in gone]
            if gone:
                await db.execute(delete(Notification).where(Notification.id.in_([nid for nid, _ in gone])))
            if kept:
                await db.execute(update(Notification).where(Notification.id.in_([nid for nid, _ in kept]))
                                 .values(text=shown))
            await db.commit()
            unread = {uid: await self._unread(db, uid) for uid in {uid for _, uid in gone}}
        for user_id, ids in _by_user(gone).items():
            await self._hub.publish(f"user:{user_id}", {"type": "notify.removed", "ids": ids,
                                                        "unread": unread[user_id]}, sequenced=False)
        for user_id, ids in _by_user(kept).items():
            await self._hub.publish(f"user:{user_id}", {"type": "notify.changed", "ids": ids, "text": shown},
                                    sequenced=False)

    async def page(self, user: User, *, before: int | None = None, limit: int = PAGE_DEFAULT
                   ) -> tuple[list[dict[str, Any]], int, int | None]:
        """Newest first: the page, the unread count and the cursor of the next page."""
        limit = max(1, min(limit, PAGE_MAX))
        query = (select(Notification, User, Post.title).outerjoin(User, User.id == Notification.actor_id)
                 .outerjoin(Post, Post.id == Notification.post_id).where(Notification.user_id == user.id))
        if before is not None:
            query = query.where(Notification.id < before)
        async with self._db() as db:
            rows = (await db.execute(query.order_by(Notification.id.desc()).limit(limit + 1))).all()
            unread = await self._unread(db, user.id)
        page = [notification_json(n, actor, title) for n, actor, title in rows[:limit]]
        return page, unread, (page[-1]["id"] if len(rows) > limit else None)

    async def mark_read(self, user: User, ids: Any = None) -> int:
        """Mark some (a list of ids) or all (None) as read; the unread count after."""
        if ids is not None:
            ids = parse_ids(ids, "ids", max_items=PAGE_MAX)
        statement = update(Notification).where(Notification.user_id == user.id, Notification.read_at.is_(None))
        if ids is not None:
            statement = statement.where(Notification.id.in_(ids))
        async with self._db() as db:
            await db.execute(statement.values(read_at=utcnow()))
            await db.commit()
            unread = await self._unread(db, user.id)
        # `ids` null: all of them; so other tabs clear exactly the ones read here.
        await self._hub.publish(f"user:{user.id}", {"type": "notify.read", "ids": ids, "unread": unread},
                                sequenced=False)
        return unread

    @staticmethod
    async def _post_title(db: AsyncSession, post_id: int | None) -> str | None:
        return None if post_id is None else await db.scalar(select(Post.title).where(Post.id == post_id))

    @staticmethod
    async def _unread(db: AsyncSession, user_id: int) -> int:
        return await db.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.read_at.is_(None))) or 0


def _by_user(rows: list[tuple[int, int]]) -> dict[int, list[int]]:
    by_user: dict[int, list[int]] = {}
    for notification_id, user_id in rows:
        by_user.setdefault(user_id, []).append(notification_id)
    return by_user
