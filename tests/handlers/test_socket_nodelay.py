"""WebSocket frames leave when a flush pass writes them, not when the client's delayed ACK lets Nagle go.

Each flush pass writes one coalesced frame per socket; a socket that only listens acknowledges late (Linux
delays a lone ACK up to ~40 ms), and with Nagle's algorithm on, every pass's frame waited for the last one's
ACK: chat in a 100-socket room ran ~35 % slower (bench/ws_fanout.py).
"""

import socket

from handlers.ws import SocketHandler
from tests.conftest import make_settings
from tests.support.server import running_server
from tests.support.ws import WsClient


class NoDelayProbe(SocketHandler):
    """The real socket handler, which then tells its client whether its socket has Nagle turned off."""

    async def open(self) -> None:
        await super().open()
        sock = self.ws_connection.stream.socket
        self.connection.emit({"type": "probe", "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)})


async def test_a_socket_sends_without_waiting_for_the_clients_acknowledgement(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", inference_enabled=False)
    async with running_server(settings, handlers=[(r"/ws", NoDelayProbe)]) as (base_url, _runtime):
        ws = await WsClient.connect(base_url)
        try:
            probe = await ws.wait_for(lambda event: event.get("type") == "probe")
        finally:
            ws.close()
    assert probe["nodelay"] != 0
