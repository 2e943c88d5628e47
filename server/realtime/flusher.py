"""One writer for every socket's waiting events, in passes (coalescing under load)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

# At most one write pass per this interval while events keep coming: busy sockets' events are
# coalesced into array frames (far fewer writes); after a quiet spell the first event leaves at once.
COALESCE_INTERVAL_SECS = 0.010
# The longest pause a long pass earns (a pass stretched by a stalled machine must not hold events long).
MAX_PAUSE_SECS = 0.050


class Flushable(Protocol):
    def flush(self, shared: dict[Any, bytes] | None = None) -> None: ...


class Flusher:
    """Writes every socket's waiting events in passes, at most one pass per interval while busy.

    Writes are the cost of fan-out (a send() per socket, most of it the kernel's), so
    while events keep arriving they are held until the next pass and leave as one array
    frame per socket; when idle, a pass runs at once and adds no delay. Within a pass a
    payload is framed once for every socket that gets it.

    A pass longer than the interval (a room of a thousand sockets on a busy machine) is
    followed by a pause as long as itself: otherwise passes run back to back, the loop has
    little time left to read the frames that make events, and each write carries fewer of
    them. Writing then takes at most about half of the loop, and a send() more events
    (the pause is capped: at most `MAX_PAUSE_SECS`).
    """

    def __init__(self, interval_secs: float = COALESCE_INTERVAL_SECS):
        self._interval = interval_secs
        self._dirty: dict[Flushable, None] = {}
        self._scheduled = False
        self._next_pass = 0.0  # loop time before which no pass runs (unless `flush_now`)

    def mark(self, connection: Flushable) -> None:
        self._dirty[connection] = None
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            wait = self._next_pass - loop.time()
            if wait > 0:
                loop.call_later(wait, self._run)
            else:
                loop.call_soon(self._run)

    def flush_now(self) -> None:
        """Write what every socket has waiting, now (before sockets close on shutdown)."""
        self._run()

    def _run(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        dirty, self._dirty = self._dirty, {}
        # One pass's encodings: the sockets of a room that wait for the same events share one frame.
        shared: dict[Any, bytes] = {}
        for connection in dirty:
            connection.flush(shared)
        ended = loop.time()
        self._next_pass = max(started + self._interval, ended + min(ended - started, MAX_PAUSE_SECS))
