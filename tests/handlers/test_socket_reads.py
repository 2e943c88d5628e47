"""The server reads sockets in small pieces, except while a request it accepted as large (an upload) is in.

Small reads keep an ordinary request cheap (Tornado allocates a buffer of the read size per read); a large
body read 64 KiB at a time costs an upload a read and an append per 64 KiB. Both on one keep-alive connection.
"""

import httpx

from handlers.base import APIHandler
from server.app import SERVER_CHUNK_BYTES, SOCKET_READ_BYTES
from tests.conftest import make_settings
from tests.support.server import running_server

BODY_BYTES = 4 * 1024 * 1024


class ReadSizeProbe(APIHandler):
    """Answers the read size of its connection: now (GET), or while its body came in (PUT)."""

    def check_xsrf_cookie(self) -> None:
        pass  # a test route, no state to protect

    async def prepare(self) -> None:
        if self.request.method == "PUT":
            self.accept_large_body(BODY_BYTES)
            self.seen: set[int] = set()

    def data_received(self, chunk: bytes) -> None:
        self.seen.add(self.request.connection.stream.read_chunk_size)

    async def get(self) -> None:
        self.write_json({"read": self.request.connection.stream.read_chunk_size})

    async def put(self) -> None:
        self.write_json({"read": sorted(self.seen)})


async def test_an_upload_reads_in_large_pieces_and_the_connection_goes_back_to_small_ones(
        embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", inference_enabled=False)
    async with running_server(settings, handlers=[(r"/test/read-size", ReadSizeProbe)]) as (base_url, _runtime):
        async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=1)) as client:
            before = await client.get("/test/read-size")
            upload = await client.put("/test/read-size", content=b"x" * BODY_BYTES)
            after = await client.get("/test/read-size")
    assert before.json() == {"read": SOCKET_READ_BYTES}
    assert upload.status_code == 200, upload.text
    assert upload.json() == {"read": [SERVER_CHUNK_BYTES]}
    assert after.json() == {"read": SOCKET_READ_BYTES}
    assert SOCKET_READ_BYTES < SERVER_CHUNK_BYTES
