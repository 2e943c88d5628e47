"""The Flusher's pacing: at once when idle, one pass per interval while busy, a pause after a long pass."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from server.realtime.flusher import COALESCE_INTERVAL_SECS, MAX_PAUSE_SECS, Flusher


class Socket:
    """A flushable that records when each pass reached it and can make a pass take a while."""

    def __init__(self, pass_secs: float = 0.0):
        self.pass_secs = pass_secs
        self.passes: list[tuple[float, float]] = []  # (start, end) in loop time

    def flush(self, shared: dict[Any, bytes] | None = None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        time.sleep(self.pass_secs)  # a pass over many sockets, compressed into one
        self.passes.append((started, loop.time()))


async def wait_for_passes(socket: Socket, count: int) -> None:
    for _ in range(500):
        if len(socket.passes) >= count:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{len(socket.passes)} passes, not {count}")


async def test_an_idle_flusher_writes_at_once_and_a_busy_one_once_per_interval():
    flusher, socket = Flusher(), Socket()
    loop = asyncio.get_running_loop()
    marked = loop.time()
    flusher.mark(socket)
    await wait_for_passes(socket, 1)
    assert socket.passes[0][0] - marked < COALESCE_INTERVAL_SECS / 2, "an idle flusher held the first event"
    flusher.mark(socket)
    await wait_for_passes(socket, 2)
    gap = socket.passes[1][0] - socket.passes[0][0]
    assert gap >= COALESCE_INTERVAL_SECS * 0.9, f"two passes {gap * 1000:.1f} ms apart while busy"


async def test_a_long_pass_is_followed_by_a_pause_as_long_as_itself_and_no_longer_than_the_cap():
    long_pass = 0.03
    flusher, socket = Flusher(), Socket(pass_secs=long_pass)
    flusher.mark(socket)
    await wait_for_passes(socket, 1)
    flusher.mark(socket)  # events keep coming during and right after the long pass
    await wait_for_passes(socket, 2)
    pause = socket.passes[1][0] - socket.passes[0][1]
    assert pause >= long_pass * 0.9, f"the next pass came {pause * 1000:.1f} ms after a {long_pass * 1000:.0f} ms one"

    socket.pass_secs = MAX_PAUSE_SECS * 3  # a pass stretched far beyond the cap (a stalled machine)
    flusher.mark(socket)
    await wait_for_passes(socket, 3)
    socket.pass_secs = 0.0
    flusher.mark(socket)
    await wait_for_passes(socket, 4)
    pause = socket.passes[3][0] - socket.passes[2][1]
    assert MAX_PAUSE_SECS * 0.9 <= pause < MAX_PAUSE_SECS * 2.5, f"paused {pause * 1000:.1f} ms after a very long pass"


async def test_flush_now_ignores_the_pause():
    flusher, socket = Flusher(), Socket(pass_secs=0.03)
    flusher.mark(socket)
    await wait_for_passes(socket, 1)
    socket.pass_secs = 0.0
    flusher.mark(socket)
    flusher.flush_now()
    assert len(socket.passes) == 2
