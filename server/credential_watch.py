"""An open socket follows its credential: revoked, or the user's rights changed, the socket closes.

A socket's principal is resolved once, at the upgrade. When a user's token is revoked or their
role changes (in this process or any other), ``account:<user id>`` is told (see
``PrincipalCache.changed``); each of that user's sockets then resolves its credential again. A
socket whose credential is gone, or whose moderator right changed, is closed with 4001, so the
client reconnects as what it now is: its subscriptions are checked afresh on the way in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from server.auth import Principal
from server.hub import Hub
from server.realtime import Connection

log = logging.getLogger(__name__)

CLOSE_CREDENTIALS_CHANGED = 4001


def account_topic(user_id: int) -> str:
    """The internal topic a user's sockets watch for credential changes (no client may subscribe)."""
    return f"account:{user_id}"


async def announce_change(hub: Hub, user_id: int) -> None:
    """Tell every process's sockets of ``user_id`` to recheck their credential."""
    await hub.publish(account_topic(user_id), {"type": "credentials.changed"}, sequenced=False)


class CredentialWatch:
    """Rechecks one socket's credential whenever its user's credentials or rights change."""

    def __init__(self, hub: Hub, connection: Connection, resolve: Callable[[], Awaitable[Principal | None]]):
        self._hub = hub
        self._connection = connection
        self._resolve = resolve
        self._topic: str | None = None
        self._pending: asyncio.Future | None = None

    async def start(self) -> None:
        principal = self._connection.principal
        if principal is not None:
            self._topic = account_topic(principal.user.id)
            await self._hub.subscribe(self._topic, self)

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._recheck())

    async def settled(self) -> None:
        """Wait for a recheck under way, so a frame is never handled with rights already taken away."""
        if self._pending is not None and not self._pending.done():
            await asyncio.shield(self._pending)

    async def _recheck(self) -> None:
        before = self._connection.principal
        try:
            now = await self._resolve()
        except Exception:  # unsure who this is now: safer to make the client reconnect than to keep rights
            log.exception("rechecking a socket's credential failed")
            now = None
        if now is None or before is None or now.user.is_moderator != before.user.is_moderator:
            self._connection.shutdown(CLOSE_CREDENTIALS_CHANGED, "credentials changed; reconnect")
        else:
            self._connection.principal = now  # profile fields, same rights

    async def close(self) -> None:
        if self._topic is not None:
            await self._hub.unsubscribe(self._topic, self)
            self._topic = None
