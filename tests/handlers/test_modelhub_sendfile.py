"""Downloads sent with sendfile(): byte-identical, the same headers, ranges, slow readers, clients that leave."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders, RequestStartLine
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.web import RequestHandler

from config import Settings
from handlers import zero_copy
from server.app import make_app
from server.modelhub.downloads import SENDFILE_STEP_BYTES
from server.runtime import Runtime
from tests.support.client import ApiClient
from tests.support.safetensors_files import small_model
from tests.support.server import running_server

# Several sendfile() steps, and more than a loopback socket's buffers hold, so the server waits for writability.
SIZE = 3 * SENDFILE_STEP_BYTES + 12345


class UsableProbe(RequestHandler):
    def get(self) -> None:
        self.finish({"usable": zero_copy.usable(self)})


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[tuple[str, Runtime]]:
    settings = settings.model_copy(update={"hub_max_file_bytes": 64 * 1024 * 1024})
    async with running_server(settings, handlers=[(r"/test/usable", UsableProbe)]) as started:
        yield started


@pytest.fixture
async def uploaded(hub) -> AsyncIterator[tuple[ApiClient, dict, bytes]]:
    client = ApiClient(hub[0])
    await client.register("alice")
    model = (await client.post("/api/hub/models", {"name": "Big"})).json()["model"]
    data = small_model(SIZE)
    response = await client.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/big.safetensors",
                                content=data)
    assert response.status_code == 201, response.text
    yield client, {**response.json()["file"], "model_id": model["id"]}, data
    await client.aclose()


async def downloads(runtime: Runtime, client: ApiClient, model_id: int) -> int:
    await runtime.modelhub.catalog.flush_counters()
    return (await client.get(f"/api/hub/models/{model_id}")).json()["model"]["downloads"]


async def test_plain_http_connections_take_the_sendfile_path(hub) -> None:
    client = ApiClient(hub[0])
    assert (await client.get("/test/usable")).json() == {"usable": True}
    await client.aclose()


async def test_whole_file_and_ranges_are_byte_identical_on_one_keep_alive_connection(hub, uploaded) -> None:
    client, file, data = uploaded
    url = file["download_url"]
    # Asking for gzip changes nothing: octet-stream is never compressed, so the length stays exact.
    whole = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Length"] == str(len(data)) and "Content-Encoding" not in whole.headers
    assert whole.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert whole.headers["Content-Type"] == "application/octet-stream"
    start, end = 1000, SENDFILE_STEP_BYTES + 999  # across a step boundary
    part = await client.get(url, headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206 and part.content == data[start:end + 1]
    assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    tail = await client.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    head = await client.request("HEAD", url)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)) and head.content == b""
    # The same connection carried every answer, so each one ended where its Content-Length said.
    assert await downloads(hub[1], client, file["model_id"]) == 2  # the whole file and the suffix


async def raw_get(base_url: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer, await reader.readuntil(b"\r\n\r\n")


async def test_a_slow_reader_gets_every_byte(hub, uploaded) -> None:
    _client, file, data = uploaded
    reader, writer, head = await raw_get(hub[0], file["download_url"])
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {len(data)}".encode() in head
    received = bytearray()
    while len(received) < len(data):
        received += await reader.read(256 * 1024)
        if len(received) < 4 * 1024 * 1024:
            await asyncio.sleep(0.002)  # slow at first: the server's socket buffer fills and it must wait
    writer.close()
    assert bytes(received) == data


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(120)
async def test_a_client_leaving_mid_download_leaves_nothing_behind(hub, uploaded, caplog) -> None:
    base_url, runtime = hub
    client, file, data = uploaded
    await client.get(file["download_url"], headers={"Range": "bytes=0-0"})  # warm: the server's lazy descriptors
    fds = open_fds()
    with caplog.at_level(logging.ERROR):
        for _ in range(8):
            reader, writer, _head = await raw_get(base_url, file["download_url"])
            await reader.readexactly(1024 * 1024)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # a reset, mid-file
        # Nothing is stuck: the io pool and the event loop still serve a whole file at once.
        whole = await asyncio.wait_for(client.get(file["download_url"]), 30)
        assert whole.content == data
        for _ in range(50):  # the aborted sends notice the reset on their next step
            if open_fds() <= fds:
                break
            await asyncio.sleep(0.1)
    assert open_fds() <= fds  # every file and duplicated socket closed
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await downloads(runtime, client, file["model_id"]) == 1  # the aborted ones never got the last byte


def self_signed(directory: Path) -> ssl.SSLContext:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
async def test_over_tls_the_body_goes_through_python_and_arrives_intact(settings: Settings, tmp_path: Path) -> None:
    """sendfile() would put plaintext on a TLS connection: TLS must keep the chunked path."""
    settings = settings.model_copy(update={"hub_max_file_bytes": 64 * 1024 * 1024})
    async with running_server(settings) as (base_url, runtime):
        app = make_app(runtime)
        app.add_handlers(r".*", [(r"/test/usable", UsableProbe)])
        tls = HTTPServer(app, ssl_options=self_signed(tmp_path))
        sockets = bind_sockets(0, "127.0.0.1")
        tls.add_sockets(sockets)
        try:
            api = ApiClient(base_url)  # upload over plain HTTP, download the same file over TLS
            await api.register("alice")
            model = (await api.post("/api/hub/models", {"name": "Big"})).json()["model"]
            data = small_model(SENDFILE_STEP_BYTES + 4321)
            uploaded = await api.put(f"/api/hub/versions/{model['versions'][0]['id']}/files/big.safetensors",
                                     content=data)
            await api.aclose()
            url = f"https://127.0.0.1:{sockets[0].getsockname()[1]}"
            async with httpx.AsyncClient(base_url=url, verify=False, timeout=30) as client:
                assert (await client.get("/test/usable")).json() == {"usable": False}
                whole = await client.get(uploaded.json()["file"]["download_url"])
                assert whole.status_code == 200 and whole.content == data
                part = await client.get(uploaded.json()["file"]["download_url"], headers={"Range": "bytes=10-19"})
                assert part.status_code == 206 and part.content == data[10:20]
        finally:
            tls.stop()


async def test_tornado_still_counts_the_body_where_mark_body_sent_says() -> None:
    """Fails loudly if a Tornado upgrade renames the private counter zero_copy relies on."""
    ours, theirs = socket.socketpair()
    connection = HTTP1Connection(IOStream(ours), is_client=True)
    assert hasattr(connection, zero_copy._REMAINING)
    headers = HTTPHeaders({"Content-Length": "5", "Host": "x"})
    await connection.write_headers(RequestStartLine("PUT", "/", "HTTP/1.1"), headers)
    assert getattr(connection, zero_copy._REMAINING) == 5
    zero_copy.mark_body_sent(connection, 5)
    connection.finish()  # raises HTTPOutputError if Tornado still expects body bytes
    with pytest.raises(RuntimeError):
        zero_copy.mark_body_sent(connection, 1)  # more than Content-Length
    connection.close()
    theirs.close()
