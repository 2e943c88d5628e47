"""API tokens for scripts: created with a secret shown once, listed, revoked."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import secret_hash
from server.errors import Conflict, InvalidInput, NotFound
from server.principals import PrincipalCache
from server.store.models import ApiToken

TOKEN_PREFIX = "va_"
TOKEN_NAME_MAX_CHARS = 64
# Plenty for scripts; stops a runaway client from minting rows forever.
MAX_TOKENS_PER_USER = 50
SHOWN_PREFIX_CHARS = 10


@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    secret: str


class TokenService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], principals: PrincipalCache):
        self._db = sessions
        self._principals = principals

    async def create(self, user_id: int, name: str) -> CreatedToken:
        """Mint a token; its secret is returned here and never again."""
        name = str(name).strip()
        if not name or len(name) > TOKEN_NAME_MAX_CHARS:
            raise InvalidInput(f"`name` must be 1–{TOKEN_NAME_MAX_CHARS} characters.")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._db() as db:
            count = await db.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id))
            if count >= MAX_TOKENS_PER_USER:
                raise Conflict(f"You have {count} tokens, the most allowed; revoke one first.", code="too_many_tokens")
            token = ApiToken(user_id=user_id, name=name, token_hash=secret_hash(secret),
                             prefix=secret[:SHOWN_PREFIX_CHARS])
            db.add(token)
            await db.commit()
        return CreatedToken(token=token, secret=secret)

    async def list(self, user_id: int) -> list[ApiToken]:
        """A user's tokens, newest first."""
        async with self._db() as db:
            rows = await db.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
            )
            return list(rows)

    async def revoke(self, user_id: int, token_id: int) -> None:
        """Delete one of the user's tokens; it stops working at once."""
        async with self._db() as db:
            token_hash = await db.scalar(
                select(ApiToken.token_hash).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
            )
            if token_hash is None:
                raise NotFound(f"You have no token with id {token_id}.")
            await db.execute(delete(ApiToken).where(ApiToken.id == token_id))
            await db.commit()
        await self._principals.changed(user_id, "token", token_hash)  # sockets opened with it close too
