"""Signing in: log-in with throttling, server-side browser sessions, bearer tokens.

Sessions live in the database, not in Redis: the project's Redis keeps nothing
on disk, and a restart of it must not sign everyone out. A cookie carries a
random secret; the database keeps only its sha256, so a leaked table cannot be
replayed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from server.errors import InvalidCredentials, Unauthenticated
from server.executors import Executors
from server.passwords import Passwords
from server.principals import PrincipalCache
from server.ratelimit import RateLimiter, refusal
from server.store.models import ApiToken, BrowserSession, User, utcnow
from server.users import USERNAME_MAX_CHARS, check_password, normalise_username

SESSION_SECRET_BYTES = 32
# Writing last-seen on every request would turn reads into writes; once a few minutes is enough.
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=5)
USER_AGENT_MAX_CHARS = 255


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and through which credential."""

    user: User
    session_id: str | None = None  # sha256 of the session secret
    token_id: int | None = None


@dataclass(frozen=True)
class NewSession:
    user: User
    secret: str  # goes into the signed cookie, never stored
    session_id: str


class AuthService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        limiter: RateLimiter,
        executors: Executors,
        settings: Settings,
        principals: PrincipalCache,
    ):
        self._db = sessions
        self._principals = principals
        # Called with revoked session ids, so their live sockets can be closed.
        self.on_sessions_revoked: Callable[[list[str]], Awaitable[None]] | None = None
        self._passwords = passwords
        self._limiter = limiter
        self._executors = executors
        self._settings = settings

    async def login(self, username: str, password: str, *, ip: str, user_agent: str = "") -> NewSession:
        """Check the password and open a new session; unknown user and wrong password look alike.

        Throttled per client address, per account and address, and per account from everywhere; each
        attempt is counted before the password is checked, so concurrent guesses cannot all slip past
        the count, and a success clears the account's counts. The account-wide count refuses only an
        address that has itself failed there: nobody's first try meets a lock that others made.
        """
        settings = self._settings
        window = settings.login_window_secs
        by_address = await self._limiter.hit(f"login-ip:{ip}", settings.login_ip_attempts, window)
        if not by_address.allowed:
            raise refusal("Too many log-in attempts from your address", by_address)
        username = normalise_username(str(username))
        if len(username) > USERNAME_MAX_CHARS:
            raise InvalidCredentials("Wrong username or password.")  # no such account; keeps counter keys short
        pair_key, account_key = f"login-fail:{username}:{ip}", f"login-fail:{username}"
        by_pair = await self._limiter.hit(pair_key, settings.login_account_failures, window)
        if not by_pair.allowed:
            raise refusal("Too many failed log-ins for this account", by_pair)
        by_account = await self._limiter.hit(account_key, settings.login_account_all_failures, window)
        if not by_account.allowed and by_pair.count > 1:
            raise refusal("Too many failed log-ins for this account", by_account)
        if not isinstance(password, str) or len(password) > settings.password_max_chars:
            password = ""
        async with self._db() as db:
            user = await db.scalar(select(User).where(User.username == username))
        matches = await self._executors.run_cpu(
            self._passwords.verify, user.password_hash if user else None, password
        )
        if user is None or not matches:
            raise InvalidCredentials("Wrong username or password.")
        await self._limiter.reset(pair_key)
        await self._limiter.reset(account_key)
        if self._passwords.needs_rehash(user.password_hash):
            await self._rehash(user, password)
        return await self.open_session(user, ip=ip, user_agent=user_agent)

    async def _rehash(self, user: User, password: str) -> None:
        new_hash = await self._executors.run_cpu(self._passwords.hash, password)
        async with self._db() as db:
            await db.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
            await db.commit()

    async def open_session(self, user: User, *, ip: str = "", user_agent: str = "") -> NewSession:
        """A fresh session with a new id (never reuse one across log-ins: session fixation)."""
        secret = secrets.token_urlsafe(SESSION_SECRET_BYTES)
        session_id = secret_hash(secret)
        now = utcnow()
        async with self._db() as db:
            db.add(BrowserSession(
                id_hash=session_id, user_id=user.id, created_at=now, last_seen_at=now,
                expires_at=now + dt.timedelta(days=self._settings.session_days),
                ip=ip[:45], user_agent=user_agent[:USER_AGENT_MAX_CHARS],
            ))
            await db.commit()
        return NewSession(user=user, secret=secret, session_id=session_id)

    async def logout(self, session_id: str) -> None:
        """Revoke one session."""
        async with self._db() as db:
            await db.execute(delete(BrowserSession).where(BrowserSession.id_hash == session_id))
            await db.commit()
        await self._principals.forget("session", session_id)
        await self._announce_revoked([session_id])

    async def revoke_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        """Revoke every session of a user, except ``keep``."""
        condition = BrowserSession.user_id == user_id
        if keep is not None:
            condition = condition & (BrowserSession.id_hash != keep)
        async with self._db() as db:
            revoked = list(await db.scalars(select(BrowserSession.id_hash).where(condition)))
            await db.execute(delete(BrowserSession).where(condition))
            await db.commit()
        await self._principals.forget("session", *revoked)
        await self._announce_revoked(revoked)

    async def _announce_revoked(self, session_ids: list[str]) -> None:
        if self.on_sessions_revoked is not None and session_ids:
            await self.on_sessions_revoked(session_ids)

    async def principal_for_session(self, secret: str) -> Principal | None:
        """The signed-in user of a live session, or None."""
        session_id = secret_hash(secret)
        now = utcnow()
        cached = await self._principals.get("session", session_id)
        if cached is not None:
            user, expires_at = cached
            if dt.datetime.fromisoformat(expires_at) > now:
                return Principal(user=user, session_id=session_id)
        async with self._db() as db:
            row = (await db.execute(
                select(BrowserSession, User).join(User, User.id == BrowserSession.user_id)
                .where(BrowserSession.id_hash == session_id)
            )).first()
            if row is None:
                return None
            session, user = row
            if session.expires_at <= now:
                await db.delete(session)
                await db.commit()
                await self._principals.forget("session", session_id)
                return None
            if now - session.last_seen_at > LAST_SEEN_RESOLUTION:
                session.last_seen_at = now
                await db.commit()
        ttl = (session.expires_at - now).total_seconds()
        await self._principals.put("session", session_id, user, session.expires_at.isoformat(), ttl)
        return Principal(user=user, session_id=session_id)

    async def principal_for_token(self, secret: str) -> Principal | None:
        """The owner of a live API token, or None."""
        token_hash = secret_hash(secret)
        cached = await self._principals.get("token", token_hash)
        if cached is not None:
            user, token_id = cached
            return Principal(user=user, token_id=token_id)
        now = utcnow()
        async with self._db() as db:
            row = (await db.execute(
                select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == token_hash)
            )).first()
            if row is None:
                return None
            token, user = row
            if token.last_used_at is None or now - token.last_used_at > LAST_SEEN_RESOLUTION:
                token.last_used_at = now
                await db.commit()
        await self._principals.put("token", token_hash, user, token.id, LAST_SEEN_RESOLUTION.total_seconds())
        return Principal(user=user, token_id=token.id)

    async def change_password(self, principal: Principal, current: str, new: str, *, revoke_tokens: bool = False
                              ) -> NewSession | None:
        """Set a new password and revoke every session (and, if asked, every API token); a browser gets a
        fresh session back. Throttled per account: each try costs two argon2 runs."""
        settings = self._settings
        user = principal.user
        await self._limiter.require(f"password:{user.id}", settings.password_change_limit,
                                    settings.password_change_window_secs, "Too many password changes")
        check_password(new, settings, "new_password")
        async with self._db() as db:
            stored = await db.scalar(select(User.password_hash).where(User.id == user.id))
        if not await self._executors.run_cpu(self._passwords.verify, stored, str(current)):
            raise InvalidCredentials("The current password is wrong.")
        new_hash = await self._executors.run_cpu(self._passwords.hash, new)
        async with self._db() as db:
            await db.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
            await db.commit()
        await self.revoke_sessions(user.id)
        if revoke_tokens:
            await self.revoke_tokens(user.id)
        if principal.session_id is None:
            return None
        return await self.open_session(user)

    async def sign_out_everywhere(self, user_id: int) -> None:
        """Revoke every session and every API token of a user; their open sockets close."""
        await self.revoke_sessions(user_id)
        await self.revoke_tokens(user_id)

    async def revoke_tokens(self, user_id: int) -> None:
        """Delete every API token of a user; sockets opened with them close."""
        async with self._db() as db:
            hashes = list(await db.scalars(select(ApiToken.token_hash).where(ApiToken.user_id == user_id)))
            await db.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
            await db.commit()
        if hashes:
            await self._principals.changed(user_id, "token", *hashes)

    async def sync_changes(self) -> None:
        """Take in credential changes other processes made (embedded mode); cheap when there are none."""
        await self._principals.sync()

    async def close(self) -> None:
        await self._principals.close()

    @staticmethod
    def require(principal: Principal | None) -> Principal:
        if principal is None:
            raise Unauthenticated("Sign in first.")
        return principal
