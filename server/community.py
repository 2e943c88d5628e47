"""Joins the community's services to each other and to chat: who is told of what, who guards which room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cache import Cache
from server.chat import ChatService
from server.chat_writer import StoredMessage
from server.follows import FollowService
from server.hub import Hub
from server.jobs import JobService
from server.moderation import ModerationService, Target
from server.notifications import NotificationService
from server.originals import Originals
from server.posts import PostService
from server.store.models import User

POST_ROOM_PREFIX = "post:"


@dataclass
class Community:
    posts: PostService
    follows: FollowService
    notifications: NotificationService
    moderation: ModerationService


def build_community(db: async_sessionmaker[AsyncSession], cache: Cache, hub: Hub, chat: ChatService,
                    jobs: JobService, *, gallery_cache_ttl_secs: int, originals: Originals | None = None) -> Community:
    posts = PostService(db, cache, hub, cache_ttl_secs=gallery_cache_ttl_secs, originals=originals)
    follows = FollowService(db)
    notifications = NotificationService(db, hub)
    moderation = ModerationService(db)

    async def on_like(owner_id: int, liker: User, post_id: int, title: str) -> None:
        await notifications.notify_once(owner_id, "like", liker, post_id=post_id, text=title)

    async def on_follow(followee_id: int, follower: User) -> None:
        await notifications.notify_once(followee_id, "follow", follower)

    def on_message(room: str, message: StoredMessage, author: User, mentioned: list[User]) -> Awaitable[None] | None:
        # A mention in a post's room names the post, so it reads as the artwork's title, not "post:12".
        post_id = int(room.removeprefix(POST_ROOM_PREFIX)) if room.startswith(POST_ROOM_PREFIX) else None
        if not mentioned and post_id is None:
            return None  # nobody to tell (most rooms' messages): the message is acked without waiting
        return tell_of_message(room, post_id, message, author, mentioned)

    async def tell_of_message(room: str, post_id: int | None, message: StoredMessage, author: User,
                              mentioned: list[User]) -> None:
        told = {author.id}
        for user in mentioned:
            await notifications.notify(user.id, "mention", author, post_id=post_id, room=room,
                                       message_id=message.id, text=message.text)
            told.add(user.id)
        if post_id is not None:
            owner_id = await posts.owner_of(post_id)
            if owner_id is not None and owner_id not in told:
                await notifications.notify(owner_id, "message", author, post_id=post_id, room=room,
                                           message_id=message.id, text=message.text)

    posts.like_listeners.append(on_like)
    follows.listeners.append(on_follow)
    chat.message_listeners.append(on_message)
    chat.change_listeners.append(notifications.message_changed)
    chat.room_guards[POST_ROOM_PREFIX] = posts.check_room

    async def post_room_owner(ident: str) -> int | None:
        """The room beside a post is its author's (they may turn `/imagine` off there)."""
        return await posts.owner_of(int(ident)) if ident.isdigit() else None

    chat.room_owners[POST_ROOM_PREFIX] = post_room_owner
    jobs.add_image_grant(posts.may_see_image)
    jobs.add_job_guard(posts.withholds_job)
    moderation.register("post", Target(set_hidden=posts.set_hidden, describe=posts.describe))
    moderation.register("message", Target(set_hidden=chat.set_hidden, describe=chat.describe))
    return Community(posts, follows, notifications, moderation)
