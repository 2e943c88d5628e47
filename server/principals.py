"""Cache of who a credential belongs to, so an authenticated read costs no SQL.

Entries are keyed by the credential's sha256 and hold a snapshot of the user.
Every write that changes what a snapshot says (profile edit, log-out, token
revocation, password change, a role change) deletes the affected entries, so the
cache never answers for a revoked credential (scaled out, another process's copy once
it has heard of the delete, see below); the TTL only bounds memory.

Scaled out, the cache is Redis, shared by every process, and each process keeps copies of the entries it
read while it hears every forget (server/principal_mirror.py). Embedded, it is in-process,
and another process on the same SQLite file (``run.py moderator``) cannot reach it:
such changes are appended to a small journal file beside the database, which the
server checks (one ``stat``) before every cached answer and every half second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cache import Cache, set_json
from server.principal_mirror import PrincipalMirror
from server.store.models import ApiToken, BrowserSession, User

log = logging.getLogger(__name__)

PRINCIPAL_TTL_SECS = 60
# Decoded cache entries kept in this process (the oldest goes first): about one per active credential.
RESTORED_ENTRIES = 4096
USER_FIELDS = ("id", "username", "email", "password_hash", "display_name", "bio", "avatar_sha256", "is_moderator")
# Sockets that send nothing still learn of another process's change within this.
JOURNAL_POLL_SECS = 0.5

# Told the id of a user whose credentials or rights changed (to recheck their open sockets).
ChangeListener = Callable[[int], Awaitable[None]]


def _snapshot(user: User) -> dict[str, Any]:
    data = {name: getattr(user, name) for name in USER_FIELDS}
    data["password_hash"] = ""  # never copied out of the database
    data["created_at"] = user.created_at.isoformat()
    return data


def _restore(data: dict[str, Any]) -> User:
    fields = {name: data[name] for name in USER_FIELDS}
    return User(**fields, created_at=dt.datetime.fromisoformat(data["created_at"]))


class ChangeJournal:
    """An append-only file of "<pid> <user id>" lines: credential changes made by any process.

    Appends of one short line with O_APPEND are atomic, so writers need no lock; a reader keeps
    its offset and reads only what was added (a partial last line waits for its newline).
    """

    def __init__(self, path: Path):
        self._path = path
        self._pid = os.getpid()
        self._offset = self._size()
        self._inode = self._stat_inode()

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self._path)
        except FileNotFoundError:
            return None

    def _size(self) -> int:
        stat = self._stat()
        return stat.st_size if stat else 0

    def _stat_inode(self) -> int | None:
        stat = self._stat()
        return stat.st_ino if stat else None

    def record(self, user_id: int) -> None:
        """Append one change (a few bytes: done in place, like a log line)."""
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{self._pid} {user_id}\n".encode())
        finally:
            os.close(fd)

    def changes(self) -> list[int]:
        """User ids that other processes changed since the last call (one stat when there are none)."""
        stat = self._stat()
        if stat is None:
            return []
        if stat.st_ino != self._inode:  # replaced (or created since we started): read it from the start
            self._inode, self._offset = stat.st_ino, 0
        if stat.st_size <= self._offset:
            return []
        with open(self._path, "rb") as journal:
            journal.seek(self._offset)
            added = journal.read(stat.st_size - self._offset)
        complete = added[:added.rfind(b"\n") + 1]
        self._offset += len(complete)
        users = []
        for line in complete.decode(errors="replace").splitlines():
            pid, _, user = line.partition(" ")
            if pid != str(self._pid) and user.isdigit():
                users.append(int(user))
        return list(dict.fromkeys(users))


class PrincipalCache:
    def __init__(self, cache: Cache, sessions: async_sessionmaker[AsyncSession],
                 journal: ChangeJournal | None = None, mirror: PrincipalMirror | None = None):
        self._cache = cache
        self._db = sessions
        self._journal = journal
        self._mirror = mirror
        # Bumped when another process changed someone: every earlier entry is then unreachable (and ages out).
        self._generation = 0
        self._restored: dict[bytes, tuple[User, Any]] = {}  # an entry's bytes -> what they say (shared, read-only)
        self._poller: asyncio.Task | None = None
        self.listeners: list[ChangeListener] = []

    def _key(self, kind: str, credential_hash: str) -> str:
        return f"principal:{self._generation}:{kind}:{credential_hash}"

    async def get(self, kind: str, credential_hash: str) -> tuple[User, Any] | None:
        """The cached user and the credential's extra (token id, session expiry), or None."""
        await self.sync()
        key = self._key(kind, credential_hash)
        raw = await (self._mirror.get(key, self._cache.get) if self._mirror is not None else self._cache.get(key))
        if raw is None:
            return None
        # The same entry is read on every request of a busy client: decoding it and building the User
        # again was most of an authenticated read's own cost. Identical bytes give the same answer, so it
        # is kept by them; a change to the user or a revocation changes or removes the entry itself.
        known = self._restored.get(raw)
        if known is None:
            data = json.loads(raw)
            known = self._restored[raw] = (_restore(data["user"]), data["extra"])
            if len(self._restored) > RESTORED_ENTRIES:
                self._restored.pop(next(iter(self._restored)))
        return known

    async def put(self, kind: str, credential_hash: str, user: User, extra: Any, ttl_secs: float) -> None:
        ttl = min(PRINCIPAL_TTL_SECS, ttl_secs)
        if ttl > 0:
            entry = {"user": _snapshot(user), "extra": extra}
            await set_json(self._cache, self._key(kind, credential_hash), entry, ttl)

    async def forget(self, kind: str, *credential_hashes: str) -> None:
        keys = [self._key(kind, h) for h in credential_hashes]
        await self._cache.delete(*keys)
        if self._mirror is not None and keys:
            await self._mirror.forget(keys)

    async def forget_user(self, user_id: int) -> None:
        """Drop every cached credential of a user (after their profile or password changed)."""
        async with self._db() as db:
            sessions = list(await db.scalars(select(BrowserSession.id_hash).where(BrowserSession.user_id == user_id)))
            tokens = list(await db.scalars(select(ApiToken.token_hash).where(ApiToken.user_id == user_id)))
        await self.forget("session", *sessions)
        await self.forget("token", *tokens)

    async def changed(self, user_id: int, kind: str | None = None, *credential_hashes: str) -> None:
        """A user's rights changed or some of their credentials were revoked: forget what is cached
        (the given credentials, or all of the user's), and tell every process and open socket."""
        if kind is None:
            await self.forget_user(user_id)
        else:
            await self.forget(kind, *credential_hashes)
        if self._journal is not None:
            self._journal.record(user_id)
        await self._tell(user_id)

    async def sync(self) -> None:
        """Take in what other processes changed (embedded mode's journal; nothing to do scaled out)."""
        if self._journal is None:
            return
        users = self._journal.changes()
        if users:
            self._generation += 1
            for user_id in users:
                await self._tell(user_id)

    async def _tell(self, user_id: int) -> None:
        for listener in self.listeners:
            await listener(user_id)

    def start(self) -> None:
        """Watch the journal, so sockets that send nothing learn of changes too."""
        if self._journal is not None and self._poller is None:
            self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(JOURNAL_POLL_SECS)
            try:
                await self.sync()
            except Exception:  # a bad moment (a listener failing) must not end the watch
                log.exception("reading the credential journal failed")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None


def journal_for(database_url: str, shared_cache: bool) -> ChangeJournal | None:
    """The journal beside an SQLite file, when the principal cache is in-process (embedded); else None."""
    url = make_url(database_url)
    if shared_cache or url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return ChangeJournal(Path(url.database + ".changes"))
