"""Who is in a room: one entry per connection, with an expiry that live connections refresh.

An entry outlives a process that died without saying goodbye by at most
``PRESENCE_TTL_SECS``; connections refresh theirs every ``PRESENCE_REFRESH_SECS``.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Protocol, TypeVar

import redis.asyncio as redis

from server.redis_client import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")

PRESENCE_TTL_SECS = 90
PRESENCE_REFRESH_SECS = 30


class Presence(Protocol):
    async def join(self, room: str, user_id: int, conn_id: str) -> bool:
        """Mark a connection present; True when its user was not present before."""

    async def leave(self, room: str, user_id: int, conn_id: str) -> bool:
        """Remove a connection; True when its user has no connection left in the room."""

    async def refresh(self, room: str, user_id: int, conn_id: str) -> None: ...

    async def members(self, room: str) -> list[int]:
        """User ids present, each once."""


def _member(user_id: int, conn_id: str) -> str:
    return f"{user_id}:{conn_id}"


def _user_of(member: str) -> int:
    return int(member.split(":", 1)[0])


class MemoryPresence:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, float]] = {}

    def _live(self, room: str, create: bool = False) -> dict[str, float]:
        """The room's live entries; only joining creates a room (a read of any name must cost no memory)."""
        entries = self._rooms.setdefault(room, {}) if create else self._rooms.get(room, {})
        now = time.monotonic()
        for member in [m for m, expiry in entries.items() if expiry <= now]:
            del entries[member]
        if not entries and not create:
            self._rooms.pop(room, None)
        return entries

    async def join(self, room: str, user_id: int, conn_id: str) -> bool:
        entries = self._live(room, create=True)
        first = all(_user_of(m) != user_id for m in entries)
        entries[_member(user_id, conn_id)] = time.monotonic() + PRESENCE_TTL_SECS
        return first

    async def leave(self, room: str, user_id: int, conn_id: str) -> bool:
        entries = self._live(room)
        entries.pop(_member(user_id, conn_id), None)
        if not entries:
            self._rooms.pop(room, None)
        return all(_user_of(m) != user_id for m in entries)

    async def refresh(self, room: str, user_id: int, conn_id: str) -> None:
        self._live(room, create=True)[_member(user_id, conn_id)] = time.monotonic() + PRESENCE_TTL_SECS

    async def members(self, room: str) -> list[int]:
        return list(dict.fromkeys(_user_of(m) for m in self._live(room)))


class RedisPresence:
    """A sorted set per room, scored by expiry time, so every process sees the same members.

    Presence is a nicety: while Redis does not answer, rooms show nobody present and joins and leaves
    are not announced, but chat goes on. Live sockets refresh their entries once it is back.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        self._redis = client
        self._prefix = prefix + "presence:"

    @staticmethod
    async def _or(fallback: T, call: Awaitable[T]) -> T:
        try:
            return await call
        except UNAVAILABLE_ERRORS as exc:
            log.warning("presence is unknown while Redis does not answer (%s)", exc)
            return fallback

    async def _live(self, room: str) -> list[str]:
        key = self._prefix + room
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        return [m.decode() for m in members]

    async def join(self, room: str, user_id: int, conn_id: str) -> bool:
        return await self._or(False, self._join(room, user_id, conn_id))

    async def _join(self, room: str, user_id: int, conn_id: str) -> bool:
        first = all(_user_of(m) != user_id for m in await self._live(room))
        await self._refresh(room, user_id, conn_id)
        return first

    async def leave(self, room: str, user_id: int, conn_id: str) -> bool:
        return await self._or(False, self._leave(room, user_id, conn_id))

    async def _leave(self, room: str, user_id: int, conn_id: str) -> bool:
        await self._redis.zrem(self._prefix + room, _member(user_id, conn_id))
        return all(_user_of(m) != user_id for m in await self._live(room))

    async def refresh(self, room: str, user_id: int, conn_id: str) -> None:
        await self._or(None, self._refresh(room, user_id, conn_id))

    async def _refresh(self, room: str, user_id: int, conn_id: str) -> None:
        key = self._prefix + room
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {_member(user_id, conn_id): time.time() + PRESENCE_TTL_SECS})
            pipe.expire(key, PRESENCE_TTL_SECS * 2)
            await pipe.execute()

    async def members(self, room: str) -> list[int]:
        return await self._or([], self._members(room))

    async def _members(self, room: str) -> list[int]:
        return list(dict.fromkeys(_user_of(m) for m in await self._live(room)))
