"""A client that closes right after the last byte of a download is normal, not a server error."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from urllib.parse import urlsplit

import pytest

from config import Settings
from tests.support.client import ApiClient
from tests.support.safetensors_files import small_model
from tests.support.server import running_server

DOWNLOADS = 40  # the close races the server's finish(); before the fix about one in ten lost it


async def download_then_close(base_url: str, path: str, size: int) -> None:
    """GET over a raw socket, read exactly the body, then reset the connection at once (SO_LINGER 0)."""
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readexactly(size)
    writer.transport.abort()


@pytest.mark.timeout(120)
async def test_a_peer_closing_after_the_last_byte_logs_no_error(settings: Settings, caplog) -> None:
    data = small_model(64 * 1024)
    async with running_server(settings) as (base_url, runtime):
        api = ApiClient(base_url)
        await api.register("alice")
        model = (await api.post("/api/hub/models", {"name": "Tiny"})).json()["model"]
        uploaded = await api.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/tiny.safetensors",
                                 content=data)
        path = uploaded.json()["file"]["download_url"]
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            for _ in range(DOWNLOADS):
                await download_then_close(base_url, path, len(data))
            await asyncio.sleep(0.2)  # let the server notice the last close
        await runtime.modelhub.catalog.flush_counters()
        detail = (await api.get(f"/api/hub/models/{model['id']}")).json()["model"]
        await api.aclose()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    assert detail["downloads"] == DOWNLOADS  # every one got its last byte, so every one counts
