"""The socket's write path: frames built once, written straight to an idle socket, in order when backed up."""

from __future__ import annotations

import asyncio
import socket
import struct

from tornado.iostream import IOStream

from handlers.ws import binary_frame, write_now


def test_binary_frame_headers_follow_rfc_6455():
    # FIN + binary opcode, no mask bit (a server never masks), then the 7-bit, 16-bit or 64-bit length.
    assert binary_frame(b"") == b"\x82\x00"
    assert binary_frame(b"x" * 125)[:2] == b"\x82\x7d"
    assert binary_frame(b"x" * 126)[:4] == b"\x82\x7e" + struct.pack("!H", 126)
    assert binary_frame(b"x" * 0xFFFF)[:4] == b"\x82\x7e\xff\xff"
    big = binary_frame(b"x" * 0x10000)
    assert big[:10] == b"\x82\x7f" + struct.pack("!Q", 0x10000) and len(big) == 10 + 0x10000


async def test_an_idle_socket_is_written_at_once_and_a_backed_up_one_keeps_the_order():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = IOStream(ours)
    try:
        assert write_now(stream, b"first") is None  # the kernel took it all: no Future, no loop turn
        assert peer.recv(100) == b"first"

        # The peer stops reading: the kernel's buffer fills, the rest waits in the stream, and every later
        # write queues behind it (never straight to the socket, which would reorder bytes).
        chunks = [bytes([i % 251]) * 50_000 for i in range(40)]
        futures = [write_now(stream, chunk) for chunk in chunks]
        pending = [f for f in futures if f is not None]
        assert pending, "the kernel took 2 MB into a 4 KiB buffer"
        assert futures.index(pending[0]) == len(futures) - len(pending), "a write skipped the queue"

        peer.setblocking(False)
        expected = b"".join(chunks)
        received = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(received) < len(expected) and loop.time() < deadline:
            try:
                received += peer.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        assert bytes(received) == expected
        await asyncio.wait_for(asyncio.gather(*pending), 10)
    finally:
        stream.close()
        peer.close()


async def test_a_closed_stream_refuses_the_write():
    ours, peer = socket.socketpair()
    stream = IOStream(ours)
    stream.close()
    peer.close()
    try:
        write_now(stream, b"late")
    except Exception as exc:  # StreamClosedError, which the handler turns into WebSocketClosedError
        assert type(exc).__name__ == "StreamClosedError"
    else:
        raise AssertionError("a write to a closed stream was accepted")
