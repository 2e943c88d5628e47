"""A native library's panic (PyO3's PanicException is a BaseException, not an Exception) is answered:
a 500 over HTTP, an `error` frame on the socket; it never leaves a request or a socket waiting."""

import asyncio
import logging

from pycrdt import Doc, Map

from handlers.base import APIHandler
from server.realtime import OpCall, op
from tests.conftest import make_settings
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server
from tests.support.ws import WsClient

PAST_64_BITS = 18446744073709551616


def panic_in_pycrdt() -> None:
    """A real panic from the real library: pycrdt cannot convert an integer past 64 bits."""
    Doc().get("settings", type=Map)["steps"] = PAST_64_BITS


class PanickingHandler(APIHandler):
    async def get(self) -> None:
        panic_in_pycrdt()

    async def post(self) -> None:
        self.json_body()
        panic_in_pycrdt()


async def test_settings_past_64_bits_are_refused_and_leave_no_session(api):
    await api.register("carol")
    for settings in ({"steps": PAST_64_BITS}, {"seed": 2**63}, {"width": -(2**63) - 1}, {"guidance": 1e300}):
        response = await asyncio.wait_for(api.post("/api/collab/sessions", {"title": "big", "settings": settings}), 10)
        assert response.status_code == 400, (settings, response.text)
        assert error_code(response) == "invalid_input" and "settings." in response.text
    assert (await api.get("/api/collab/sessions")).json()["sessions"] == []
    fine = await api.post("/api/collab/sessions", {"settings": {"seed": 2**32 - 1, "steps": 20, "guidance": 7.5}})
    assert fine.status_code == 201, fine.text


async def test_a_panic_in_a_handler_is_a_logged_500_not_a_hung_request(embedded_backend, tmp_path, caplog):
    settings = make_settings(embedded_backend, tmp_path / "data")
    async with running_server(settings, handlers=[(r"/api/test/panic", PanickingHandler)]) as (base, _runtime):
        client = ApiClient(base)
        try:
            with caplog.at_level(logging.ERROR):
                for method in ("GET", "POST"):
                    response = await asyncio.wait_for(
                        client.request(method, "/api/test/panic", json={"a": 1} if method == "POST" else None), 10)
                    assert response.status_code == 500, response.text
                    assert error_code(response) == "internal_error"
            assert "PanicException" in caplog.text
            # The server goes on answering.
            assert (await client.get("/api/me")).status_code == 401
        finally:
            await client.aclose()


async def test_a_panic_in_a_socket_op_is_an_error_frame_and_the_socket_goes_on(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data")
    async with running_server(settings) as (base, runtime):
        ws = await WsClient.connect(base)
        try:
            await ws.request("ping")
            (connection,) = runtime.connections

            @op("explode", signed_in=False)
            async def explode(_call: OpCall) -> None:  # an op that reaches the native library
                panic_in_pycrdt()

            connection.ops.register(explode)
            reply = await ws.request("explode")
            assert reply["type"] == "error" and reply["code"] == "internal_error", reply
            assert (await ws.request("ping"))["type"] == "pong"
        finally:
            ws.close()


async def test_json_numbers_python_cannot_parse_are_a_400(api):
    await api.register("dave")
    response = await api.post("/api/collab/sessions", content=b'{"settings": {"steps": ' + b"9" * 5000 + b"}}",
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and error_code(response) == "invalid_json", response.text
    # NaN (which Python's json reads) is refused by the field's own check, which names it.
    response = await api.post("/api/collab/sessions", content=b'{"settings": {"guidance": NaN}}',
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "settings.guidance" in response.text, response.text

