"""A real Tornado server for tests, on a port the OS picks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from config import Settings
from server.app import make_app
from server.runtime import Runtime

MAX_BODY_BYTES = 64 * 1024**3


@asynccontextmanager
async def running_server(settings: Settings, *, handlers: list | None = None) -> AsyncIterator[tuple[str, Runtime]]:
    """Start the app on 127.0.0.1:<free port>; yields its base URL and runtime.

    ``handlers``: extra routes (a test's own handler on the real app), matched before the app's own."""
    runtime = await Runtime.start(settings, migrate=True)
    app = make_app(runtime)
    if handlers:
        app.add_handlers(r".*", handlers)
    server = HTTPServer(app, max_body_size=MAX_BODY_BYTES)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        server.stop()
        await server.close_all_connections()
        await runtime.close()
