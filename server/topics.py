"""Who may subscribe to which topic. Each feature registers the kinds it owns."""

from __future__ import annotations

import re
from typing import Awaitable, Callable

from server.auth import Principal
from server.errors import Forbidden, InvalidInput

# Matched whole (fullmatch): with `$`, "room:lobby\n" passed as "lobby" but was kept, and left, as "lobby\n".
TOPIC_RE = re.compile(r"([a-z]+):(.{1,128})")
# principal (None when anonymous), the part after "kind:" -> may subscribe?
Authorizer = Callable[[Principal | None, str], Awaitable[bool]]


class TopicPolicy:
    def __init__(self) -> None:
        self._authorizers: dict[str, Authorizer] = {}

    def register(self, kind: str, authorizer: Authorizer) -> None:
        self._authorizers[kind] = authorizer

    async def check(self, principal: Principal | None, topic: str) -> tuple[str, str]:
        """The topic's kind and id, if ``principal`` may subscribe; raises otherwise."""
        match = TOPIC_RE.fullmatch(topic) if isinstance(topic, str) else None
        if match is None or match.group(1) not in self._authorizers:
            raise InvalidInput(f"{str(topic)[:80]!r} is not a topic (room:<name>, user:<id>, job:<id>, collab:<id>).",
                               code="bad_topic")
        kind, ident = match.groups()
        if not await self._authorizers[kind](principal, ident):
            raise Forbidden(f"You may not subscribe to {topic}.")
        return kind, ident


async def own_user_topic(principal: Principal | None, ident: str) -> bool:
    """``user:<id>`` is for that user alone."""
    return principal is not None and ident == str(principal.user.id)
