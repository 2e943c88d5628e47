"""Following people: the edge, the counts on a profile, and the listeners told of a new follower."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from sqlalchemy import delete, false, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import InvalidInput
from server.store.community_tables import Follow, Post
from server.store.models import User

# Called after a new follow: (followee id, follower).
FollowListener = Callable[[int, User], Awaitable[None]]


class FollowService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions
        self.listeners: list[FollowListener] = []

    async def set_following(self, follower: User, followee: User, following: bool) -> dict[str, Any]:
        """Follow or unfollow; doing either twice changes nothing."""
        if follower.id == followee.id:
            raise InvalidInput("You cannot follow yourself.", code="self_follow")
        changed = False
        async with self._db() as db:
            if following:
                try:
                    db.add(Follow(follower_id=follower.id, followee_id=followee.id))
                    await db.commit()
                    changed = True
                except IntegrityError:
                    await db.rollback()
            else:
                await db.execute(delete(Follow).where(Follow.follower_id == follower.id,
                                                      Follow.followee_id == followee.id))
                await db.commit()
            followers = await _count(db, Follow.followee_id == followee.id)
        if changed:
            for listener in self.listeners:
                await listener(followee.id, follower)
        return {"following": following, "followers": followers}

    async def profile_stats(self, user: User, viewer: User | None) -> dict[str, Any]:
        """Follower, following and post counts, and whether the viewer follows this user."""
        async with self._db() as db:
            stats = {
                "followers": await _count(db, Follow.followee_id == user.id),
                "following": await _count(db, Follow.follower_id == user.id),
                "posts": await db.scalar(select(func.count()).select_from(Post)
                                         .where(Post.owner_id == user.id, Post.hidden == false())) or 0,
                "followed": False,
            }
            if viewer is not None and viewer.id != user.id:
                stats["followed"] = await db.get(Follow, (viewer.id, user.id)) is not None
        return stats


async def _count(db: AsyncSession, condition: Any) -> int:
    return await db.scalar(select(func.count()).select_from(Follow).where(condition)) or 0
