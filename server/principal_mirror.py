"""Scaled out, an in-process copy of the principal cache's entries, so an authenticated request asks Redis
nothing.

Reading the shared cache was a Redis round trip per request, about a third of an authenticated read's CPU in
a web process (redis-py's client alone costs ~100 us a call). An entry copied here is used only while this
process hears every forget: each forget is published on the hub (``principals``), and every process drops
those keys on hearing it. A copy is kept only while the hub's subscription is unbroken (``RedisHub.unbroken``):
once the pub/sub connection drops or reconnects, every copy made before is ignored, since a forget published
meanwhile was lost. A forget made in another process is honoured here once its message arrives (it is sent
before the forgetting request is answered, and arrives in well under a millisecond); copies also expire after
``MIRROR_TTL_SECS``, which bounds what a message lost without the connection dropping could cost.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Awaitable, Callable

from server.hub import RedisHub
from server.hub.frames import BadFrame, decode

TOPIC = "principals"
MIRROR_TTL_SECS = 1.0
MIRROR_ENTRIES = 4096


class PrincipalMirror:
    def __init__(self, hub: RedisHub, ttl_secs: float = MIRROR_TTL_SECS,
                 clock: Callable[[], float] = time.monotonic):
        self._hub = hub
        self._ttl = ttl_secs
        self._clock = clock
        self._copies: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()  # key -> (expiry, gaps, raw)
        self._forgets = 0

    async def start(self) -> None:
        await self._hub.subscribe(TOPIC, self)

    async def get(self, key: str, read_shared: Callable[[str], Awaitable[bytes | None]]) -> bytes | None:
        """The entry under ``key``: this process's copy, else ``read_shared(key)``'s answer (copied, unless a
        forget was heard or the subscription broke while it was read: the answer may be the forgotten one)."""
        gaps = self._hub.unbroken
        copy = self._copies.get(key)
        if copy is not None:
            expires_at, copied_gaps, raw = copy
            if gaps is not None and copied_gaps == gaps and expires_at > self._clock():
                return raw
            del self._copies[key]
        before = (gaps, self._forgets)
        raw = await read_shared(key)
        if raw is not None and gaps is not None and before == (self._hub.unbroken, self._forgets):
            self._copies[key] = (self._clock() + self._ttl, gaps, raw)
            if len(self._copies) > MIRROR_ENTRIES:
                self._copies.popitem(last=False)
        return raw

    async def forget(self, keys: list[str]) -> None:
        """Drop ``keys`` here and in every other process (after they were deleted from the shared cache)."""
        self._drop(keys)
        await self._hub.publish(TOPIC, {"type": "principals.forget", "keys": keys}, sequenced=False)

    def _drop(self, keys: list[str]) -> None:
        self._forgets += 1
        for key in keys:
            self._copies.pop(key, None)

    # The hub's Subscriber interface.
    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        try:
            keys = decode(frame).get("keys")
        except (BadFrame, AttributeError):
            keys = None
        if isinstance(keys, list):
            self._drop([key for key in keys if isinstance(key, str)])
        else:  # unreadable: forget everything rather than guess
            self._forgets += 1
            self._copies.clear()

    def reset(self, topic: str, epoch: str) -> None:
        self._forgets += 1
        self._copies.clear()
