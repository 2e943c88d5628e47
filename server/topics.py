"""Who may subscribe to which topic, and what a feature does when a socket joins or leaves one.

Each feature registers the kinds it owns: an authorizer, and optional join/leave hooks
(a room announces presence; a collab session tracks its members' cursors). A
connection calls `joined`/`left` without knowing what any kind means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from server.auth import Principal
from server.errors import Forbidden, InvalidInput

# Matched whole (fullmatch): with `$`, "room:lobby\n" passed as "lobby" but was kept, and left, as "lobby\n".
TOPIC_RE = re.compile(r"([a-z]+):(.{1,128})")
# principal (None when anonymous), the part after "kind:" -> may subscribe?
Authorizer = Callable[[Principal | None, str], Awaitable[bool]]
# (the socket, the part after "kind:")
TopicHook = Callable[[Any, str], Awaitable[None]]


@dataclass(frozen=True)
class TopicKind:
    authorize: Authorizer
    joined: TopicHook | None = None
    left: TopicHook | None = None


class TopicPolicy:
    def __init__(self) -> None:
        self._kinds: dict[str, TopicKind] = {}

    def register(self, kind: str, authorizer: Authorizer, *, joined: TopicHook | None = None,
                 left: TopicHook | None = None) -> None:
        self._kinds[kind] = TopicKind(authorizer, joined, left)

    async def check(self, principal: Principal | None, topic: str) -> tuple[str, str]:
        """The topic's kind and id, if ``principal`` may subscribe; raises otherwise."""
        match = TOPIC_RE.fullmatch(topic) if isinstance(topic, str) else None
        if match is None or match.group(1) not in self._kinds:
            raise InvalidInput(f"{str(topic)[:80]!r} is not a topic (room:<name>, user:<id>, job:<id>, collab:<id>, "
                               "live:all).",
                               code="bad_topic")
        kind, ident = match.groups()
        if not await self._kinds[kind].authorize(principal, ident):
            raise Forbidden(f"You may not subscribe to {topic}.")
        return kind, ident

    async def joined(self, socket: Any, topic: str) -> None:
        """A socket now watches ``topic`` (after `check`)."""
        kind, ident = self._split(topic)
        if kind is not None and kind.joined is not None:
            await kind.joined(socket, ident)

    async def left(self, socket: Any, topic: str) -> None:
        """A socket stopped watching ``topic`` (unsub, revoked, closed)."""
        kind, ident = self._split(topic)
        if kind is not None and kind.left is not None:
            await kind.left(socket, ident)

    def _split(self, topic: str) -> tuple[TopicKind | None, str]:
        name, _, ident = topic.partition(":")
        return self._kinds.get(name), ident


async def own_user_topic(principal: Principal | None, ident: str) -> bool:
    """``user:<id>`` is for that user alone."""
    return principal is not None and ident == str(principal.user.id)
