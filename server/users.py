"""Accounts and profiles: registration, profile edits, avatars."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from server.blobs import BlobStore
from server.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from server.executors import Executors
from server.images import make_avatar
from server.passwords import Passwords
from server.principals import PrincipalCache
from server.ratelimit import RateLimiter
from server.store.models import User
from server.text import clean_text

USERNAME_MAX_CHARS = 32
USERNAME_RE = re.compile(r"[a-z0-9_]{3,32}")
USERNAME_PREFIX_RE = re.compile(r"[a-z0-9_]{1,32}")
USER_SEARCH_MAX = 10  # names an autocomplete shows at once
# No whitespace or control characters (docs/openapi.yaml has the same pattern).
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]{2,}$")
DISPLAY_NAME_MAX_CHARS = 64
BIO_MAX_CHARS = 500
EMAIL_MAX_CHARS = 254


def avatar_url(user: User) -> str | None:
    # The digest in the URL lets browsers cache the image for good and still see a change at once.
    return f"/api/users/{user.username}/avatar?v={user.avatar_sha256[:12]}" if user.avatar_sha256 else None


def public_user(user: User) -> dict:
    """What anyone may see of a user (profiles, chat authors, presence)."""
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "avatar_url": avatar_url(user),
    }


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_password(password: str, settings: Settings, field: str = "password") -> None:
    """Refuse, never truncate, a password outside the configured bounds (``field``: the input it came in)."""
    if not isinstance(password, str) or len(password) < settings.password_min_chars:
        raise InvalidInput(f"`password` must be at least {settings.password_min_chars} characters.",
                           code="weak_password", data={"field": field})
    if len(password) > settings.password_max_chars:
        raise InvalidInput(
            f"`password` must be at most {settings.password_max_chars} characters but is {len(password)}.",
            code="password_too_long", data={"field": field},
        )


def _clean_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip()
    if len(email) > EMAIL_MAX_CHARS or not EMAIL_RE.match(email):
        raise InvalidInput(f"`email` {email[:80]!r} is not an e-mail address.", data={"field": "email"})
    return email


class UserService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        blobs: BlobStore,
        executors: Executors,
        settings: Settings,
        principals: PrincipalCache,
        limiter: RateLimiter,
    ):
        self._sessions = sessions
        self._limiter = limiter
        self._principals = principals
        self._passwords = passwords
        self._blobs = blobs
        self._executors = executors
        self._settings = settings

    async def register(self, username: str, password: str, email: str | None = None, *, ip: str | None = None
                       ) -> User:
        """Create an account; the username is case-insensitive and must be free. ``ip``: the client's
        address, throttled (each attempt costs an argon2 hash); None for the command line and tests."""
        if ip is not None:
            await self._limiter.require(f"register:{ip}", self._settings.register_limit,
                                        self._settings.register_window_secs,
                                        "Too many new accounts from your address")
        username = normalise_username(username)
        if not USERNAME_RE.fullmatch(username):
            raise InvalidInput(
                "`username` must be 3–32 characters of a–z, 0–9 and _.", code="invalid_username",
                data={"field": "username"},
            )
        check_password(password, self._settings)
        email = _clean_email(email)
        password_hash = await self._executors.run_cpu(self._passwords.hash, password)
        user = User(username=username, email=email, password_hash=password_hash, display_name=username, bio="")
        async with self._sessions() as db:
            db.add(user)
            try:
                await db.commit()
            except IntegrityError:
                raise Conflict(f"The username {username!r} is taken.", code="username_taken",
                               data={"field": "username"}) from None
        return user

    async def get(self, user_id: int) -> User:
        """The user with this id."""
        async with self._sessions() as db:
            user = await db.get(User, user_id)
        if user is None:
            raise NotFound(f"No user has id {user_id}.")
        return user

    async def get_by_username(self, username: str) -> User:
        """The user with this name (any case)."""
        async with self._sessions() as db:
            user = await db.scalar(select(User).where(User.username == normalise_username(username)))
        if user is None:
            raise NotFound(f"No user is called {username[:64]!r}.", code="user_not_found")
        return user

    async def search(self, prefix: str, limit: int = USER_SEARCH_MAX) -> list[User]:
        """Users whose name starts with ``prefix`` (a–z, 0–9, _), in name order: the @mention autocomplete."""
        prefix = prefix.strip().lower().removeprefix("@")
        if not USERNAME_PREFIX_RE.fullmatch(prefix):
            raise InvalidInput("`q` must be 1–32 letters, digits or _ (the start of a username).", data={"field": "q"})
        limit = max(1, min(limit, USER_SEARCH_MAX))
        # `_` is a wildcard in LIKE: escaped, so "an_" finds "an_a", not "anna".
        pattern = prefix.replace("_", "\\_") + "%"
        async with self._sessions() as db:
            return list(await db.scalars(select(User).where(User.username.like(pattern, escape="\\"))
                                         .order_by(User.username).limit(limit)))

    async def update_profile(
        self, user_id: int, *, display_name: str | None = None, bio: str | None = None, email: str | None = None,
        clear_email: bool = False,
    ) -> User:
        """Change the fields given; validation happens before anything is written."""
        changes: dict[str, object] = {}
        if display_name is not None:
            display_name = clean_text(display_name, "display_name", DISPLAY_NAME_MAX_CHARS, multiline=False)
            if not display_name:
                raise InvalidInput("`display_name` must not be empty.")
            changes["display_name"] = display_name
        if bio is not None:
            changes["bio"] = clean_text(bio, "bio", BIO_MAX_CHARS)
        if email is not None or clear_email:
            changes["email"] = _clean_email(email)
        async with self._sessions() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise NotFound(f"No user has id {user_id}.")
            for field, value in changes.items():
                setattr(user, field, value)
            await db.commit()
        await self._principals.forget_user(user_id)
        return user

    async def set_moderator(self, username: str, moderator: bool) -> User:
        """Grant or revoke the moderator role (from the command line: ``run.py moderator``)."""
        user = await self.get_by_username(username)
        async with self._sessions() as db:
            user = await db.get(User, user.id)
            user.is_moderator = moderator
            await db.commit()
        # Every process, and every open socket of theirs, at once (see PrincipalCache.changed).
        await self._principals.changed(user.id)
        return user

    async def set_avatar(self, user_id: int, data: bytes) -> User:
        """Verify, re-encode and store an avatar image."""
        if len(data) > self._settings.max_avatar_bytes:
            raise PayloadTooLarge(f"Avatars must be at most {self._settings.max_avatar_bytes // (1024 * 1024)} MiB.")
        if not data:
            raise InvalidInput("The avatar upload is empty.", code="invalid_image")
        encoded = await self._executors.run_cpu(make_avatar, data, self._settings.avatar_size_px)
        digest = await self._executors.run_io(self._blobs.put_bytes, encoded)
        return await self._set_avatar_sha(user_id, digest)

    async def clear_avatar(self, user_id: int) -> User:
        """Remove the avatar (the blob stays: content-addressed blobs may be shared)."""
        return await self._set_avatar_sha(user_id, None)

    async def _set_avatar_sha(self, user_id: int, digest: str | None) -> User:
        async with self._sessions() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise NotFound(f"No user has id {user_id}.")
            user.avatar_sha256 = digest
            await db.commit()
        await self._principals.forget_user(user_id)
        return user

    async def avatar_bytes(self, username: str) -> tuple[str, bytes]:
        """The avatar's sha256 and WebP bytes."""
        user = await self.get_by_username(username)
        if user.avatar_sha256 is None:
            raise NotFound(f"{user.username} has no avatar.")
        return user.avatar_sha256, await self._executors.run_io(self._blobs.read_bytes, user.avatar_sha256)
