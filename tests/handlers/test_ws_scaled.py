"""Scaled out: two server processes' worth of app sharing MariaDB + Redis, and slow readers."""

import asyncio
import base64
import os
import socket
import struct
import time

import msgpack
import pytest

from handlers.ws import CLOSE_GRACE_SECS
from server.realtime import CLOSE_TOO_SLOW
from tests.conftest import make_settings
from tests.support.client import ApiClient
from tests.support.server import running_server
from tests.support.ws import WsClient


async def test_two_servers_share_rooms_in_order(backend, settings):
    if not backend.services:
        pytest.skip("two web processes need MariaDB + Redis")
    async with running_server(settings) as (web1, _rt1), running_server(settings) as (web2, _rt2):
        alice, bob = ApiClient(web1), ApiClient(web2)
        try:
            await alice.register("alice")
            await bob.register("bob")
            ws_a = await WsClient.connect(web1, api=alice)
            ws_b = await WsClient.connect(web2, api=bob)
            await ws_a.request("sub", topic="room:across")
            await ws_b.request("sub", topic="room:across")
            for i in range(10):
                sender = ws_a if i % 2 == 0 else ws_b
                assert (await sender.request("chat.send", room="across", text=f"m{i}"))["type"] == "ack"
            on_b = await ws_b.collect("chat.msg", 10)
            on_a = await ws_a.collect("chat.msg", 10)
            for received in (on_a, on_b):
                assert [e["message"]["text"] for e in received] == [f"m{i}" for i in range(10)]
                assert [e["seq"] for e in received] == list(range(1, 11))
            # Presence is shared too: bob (on web2) sees alice (on web1).
            users = (await bob.get("/api/rooms/across/presence")).json()["users"]
            assert sorted(u["username"] for u in users) == ["alice", "bob"]
            ws_a.close()
            ws_b.close()
        finally:
            await alice.aclose()
            await bob.aclose()


async def raw_upgrade(base_url: str, *, receive_buffer_bytes: int | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket that completes the handshake, subscribes to room:firehose and reads only when told."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    if receive_buffer_bytes:  # fixed, so the kernel does not absorb megabytes on the reader's behalf
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    # A small reader limit: once 4 KiB are buffered the transport stops reading from the kernel.
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {base_url}\r\n\r\n"
    ).encode())
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 101"), status
    while await reader.readline() != b"\r\n":
        pass
    payload = msgpack.packb({"op": "sub", "topic": "room:firehose"})
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    return reader, writer


async def read_until_close(reader: asyncio.StreamReader, bytes_per_sec: float) -> tuple[int | None, int]:
    """Read frames at a bounded rate until the close frame: (its code, or None if cut off; bytes read)."""
    total = 0
    while True:
        try:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length >= 126:
                extended = await reader.readexactly(2 if length == 126 else 8)
                length = struct.unpack(">H" if length == 126 else ">Q", extended)[0]
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, total
        total += 2 + length
        if head[0] & 0x0F == 0x8:  # close
            return struct.unpack(">H", payload[:2])[0], total
        await asyncio.sleep(length / bytes_per_sec)


async def test_a_slow_reader_is_dropped_and_others_keep_receiving(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", ws_max_send_buffer_bytes=256 * 1024)
    async with running_server(settings) as (base, runtime):
        reader = await WsClient.connect(base)
        await reader.request("sub", topic="room:firehose")
        _, slow = await raw_upgrade(base)
        await asyncio.sleep(0.2)
        assert len(runtime.connections) == 2
        big = "x" * 16_000
        events = 1500  # 24 MB: more than the kernel's socket buffers and the bound together
        received = []
        for i in range(events):
            await runtime.hub.publish("room:firehose", {"type": "chat.msg", "i": i, "pad": big}, sequenced=False)
            received.append(await reader.wait_type("chat.msg"))  # a reader that keeps up
        assert [e["i"] for e in received] == list(range(events))
        # The close handshake cannot finish with a peer that does not read: it is dropped after the grace.
        deadline = time.monotonic() + CLOSE_GRACE_SECS + 3
        while len(runtime.connections) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(runtime.connections) == 1, "the slow socket should have been dropped"
        slow.close()
        reader.close()


async def test_a_slow_reader_sees_close_code_4008_before_it_is_dropped(embedded_backend, tmp_path):
    """The close frame follows only a small window, not the megabytes the reader was too slow for."""
    settings = make_settings(embedded_backend, tmp_path / "data", ws_max_send_buffer_bytes=16 * 1024 * 1024)
    async with running_server(settings) as (base, runtime):
        reader, writer = await raw_upgrade(base, receive_buffer_bytes=64 * 1024)
        await asyncio.sleep(0.2)
        (connection,) = runtime.connections
        big = "x" * 16_000
        for i in range(5000):  # until the server judges the reader too slow: 16 MiB waiting
            await runtime.hub.publish("room:firehose", {"type": "chat.msg", "i": i, "pad": big}, sequenced=False)
            if connection.closed:
                break
            if i % 50 == 0:
                await asyncio.sleep(0)
        else:
            raise AssertionError("the reader was never judged too slow")
        # A reader that does read, slowly (2 MB/s): it gets to the close frame and learns why it was cut off.
        code, read = await asyncio.wait_for(read_until_close(reader, 2_000_000), 30)
        assert code == CLOSE_TOO_SLOW, f"no 4008 close frame after {read:,} bytes (cut off: {code})"
        writer.close()
