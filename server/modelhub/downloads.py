"""Serving stored files: byte ranges; sending a file to a socket (sendfile) or reading it in chunks, off the loop."""

from __future__ import annotations

import asyncio
import os
import re
import select
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from server.executors import Executors
from server.modelhub.errors import RangeNotSatisfiable

# Large enough that the executor hop and the flush await per chunk are noise (bench/hub.py: 8 MiB beat 2 MiB),
# small enough that memory stays flat (two chunks per download).
READ_CHUNK_BYTES = 8 * 1024 * 1024
# Most bytes one sendfile() step may move; a step goes as far as the socket's send buffer takes.
SENDFILE_STEP_BYTES = 8 * 1024 * 1024
# Within a step, how long the pool thread waits for a full send buffer to drain before it hands the wait
# to the event loop. A reader that keeps up drains it in a millisecond or two: without this each buffer's
# worth cost a thread hop and a loop turn, and downloads ran slower than the old copy through Python; a
# slow reader still holds no thread for longer than this.
SENDFILE_THREAD_WAIT_MS = 20
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a `Range` header asks for, or None for the whole file.

    Several ranges, or a header that is not a byte range, are answered with the whole file
    (RFC 9110 lets a server ignore Range); a range that starts past the end is a 416.
    """
    if not header:
        return None
    match = RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    unsatisfiable = RangeNotSatisfiable(
        f"The range {header.strip()[:60]!r} is outside the file's {size:,} bytes.",
        headers={"Content-Range": f"bytes */{size}"})
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size:
        raise unsatisfiable
    if end < start:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    return ByteRange(start, min(end, size - 1))


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._") or "model.safetensors"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def read_range(executors: Executors, path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    """The bytes [start, start+length) of a file; the next chunk is read while this one is sent."""
    f = await executors.run_io(open, path, "rb", 0)  # unbuffered: each read is one read() into its own bytes
    pending: asyncio.Future | None = None
    try:
        # Read front to back: the kernel reads ahead further (Linux doubles its window).
        os.posix_fadvise(f.fileno(), start, length, os.POSIX_FADV_SEQUENTIAL)
        await executors.run_io(f.seek, start)
        remaining = length
        if remaining > 0:
            pending = asyncio.ensure_future(executors.run_io(f.read, min(READ_CHUNK_BYTES, remaining)))
        while pending is not None:
            chunk = await pending
            pending = None
            if not chunk:
                raise OSError(f"{path.name} is shorter than recorded")
            remaining -= len(chunk)
            if remaining > 0:
                pending = asyncio.ensure_future(executors.run_io(f.read, min(READ_CHUNK_BYTES, remaining)))
            yield chunk
    finally:
        if pending is not None:  # the client went away mid-file: let the read finish before closing
            with suppress(Exception):
                await pending
        await executors.run_io(f.close)


async def sendfile_range(executors: Executors, path: Path, sock_fd: int, start: int, length: int,
                         before_last: Callable[[], Awaitable[None]]) -> None:
    """Send the bytes [start, start+length) of a file to a connected non-blocking socket with sendfile().

    The kernel copies page cache to socket: no bytes pass through Python. sendfile() may still wait for the
    disk, so each step runs in the io pool; between steps the event loop waits for the socket to be
    writable (no thread is held by a slow client). `before_last` is awaited before the step that sends
    the last byte. Raises ConnectionError (broken pipe, reset) when the peer goes away.
    """
    loop = asyncio.get_running_loop()
    f = await executors.run_io(open, path, "rb", 0)
    step: asyncio.Future | None = None
    try:
        os.posix_fadvise(f.fileno(), start, length, os.POSIX_FADV_SEQUENTIAL)
        offset, end, counted = start, start + length, False
        while offset < end:
            if not counted and end - offset <= SENDFILE_STEP_BYTES:
                counted = True
                await before_last()
            step = asyncio.ensure_future(executors.run_io(_send_some, sock_fd, f.fileno(), offset, end - offset))
            sent = await step
            step = None
            offset += sent
            if offset < end and sent < SENDFILE_STEP_BYTES:
                await _writable(loop, sock_fd)  # the send buffer is full: wait until the peer reads
    finally:
        if step is not None:  # cancelled mid-step: the thread still uses both descriptors
            with suppress(Exception):
                await asyncio.shield(step)
        await executors.run_io(f.close)


def _send_some(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """sendfile() until the socket's buffer is full or one step is done; how many bytes went. Blocks on disk."""
    sent, limit = 0, min(count, SENDFILE_STEP_BYTES)
    # sendfile() reads the file through the kernel's readahead, in far smaller pieces than the 8 MiB reads
    # of the copying path; asking for this step and the next at once keeps the disk ahead of the socket.
    os.posix_fadvise(file_fd, offset, min(count, 2 * SENDFILE_STEP_BYTES), os.POSIX_FADV_WILLNEED)
    writable = select.poll()
    writable.register(sock_fd, select.POLLOUT)
    while sent < limit:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, limit - sent)
        except BlockingIOError:
            if not writable.poll(SENDFILE_THREAD_WAIT_MS):
                break
            continue
        if n == 0:
            raise OSError("the file is shorter than recorded")
        sent += n
    return sent


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_writer(fd)
