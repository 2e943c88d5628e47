"""Cache of who a credential belongs to, so an authenticated read costs no SQL.

Entries are keyed by the credential's sha256 and hold a snapshot of the user.
Every write that changes what a snapshot says (profile edit, log-out, token
revocation, password change) deletes the affected entries, so the cache never
answers for a revoked credential; the TTL only bounds memory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cache import Cache, get_json, set_json
from server.store.models import ApiToken, BrowserSession, User

PRINCIPAL_TTL_SECS = 60
USER_FIELDS = ("id", "username", "email", "password_hash", "display_name", "bio", "avatar_sha256", "is_moderator")


def _key(kind: str, credential_hash: str) -> str:
    return f"principal:{kind}:{credential_hash}"


def _snapshot(user: User) -> dict[str, Any]:
    data = {name: getattr(user, name) for name in USER_FIELDS}
    data["password_hash"] = ""  # never copied out of the database
    data["created_at"] = user.created_at.isoformat()
    return data


def _restore(data: dict[str, Any]) -> User:
    fields = {name: data[name] for name in USER_FIELDS}
    return User(**fields, created_at=dt.datetime.fromisoformat(data["created_at"]))


class PrincipalCache:
    def __init__(self, cache: Cache, sessions: async_sessionmaker[AsyncSession]):
        self._cache = cache
        self._db = sessions

    async def get(self, kind: str, credential_hash: str) -> tuple[User, Any] | None:
        """The cached user and the credential's extra (token id, session expiry), or None."""
        data = await get_json(self._cache, _key(kind, credential_hash))
        if data is None:
            return None
        return _restore(data["user"]), data["extra"]

    async def put(self, kind: str, credential_hash: str, user: User, extra: Any, ttl_secs: float) -> None:
        ttl = min(PRINCIPAL_TTL_SECS, ttl_secs)
        if ttl > 0:
            await set_json(self._cache, _key(kind, credential_hash), {"user": _snapshot(user), "extra": extra}, ttl)

    async def forget(self, kind: str, *credential_hashes: str) -> None:
        await self._cache.delete(*(_key(kind, h) for h in credential_hashes))

    async def forget_user(self, user_id: int) -> None:
        """Drop every cached credential of a user (after their profile or password changed)."""
        async with self._db() as db:
            sessions = list(await db.scalars(select(BrowserSession.id_hash).where(BrowserSession.user_id == user_id)))
            tokens = list(await db.scalars(select(ApiToken.token_hash).where(ApiToken.user_id == user_id)))
        await self.forget("session", *sessions)
        await self.forget("token", *tokens)
