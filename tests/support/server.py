"""A real Tornado server for tests, on a port the OS picks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from tornado.netutil import bind_sockets

from config import Settings
from server.app import make_app, make_http_server
from server.runtime import Runtime
from server.worker.role import WorkerRole


@asynccontextmanager
async def running_server(settings: Settings, *, handlers: list | None = None) -> AsyncIterator[tuple[str, Runtime]]:
    """Start the app on 127.0.0.1:<free port> (with a worker unless inference is disabled); yields URL and runtime.

    ``handlers``: extra routes (a test's own handler on the real app), matched before the app's own."""
    runtime = await Runtime.start(settings, migrate=True)
    server = None
    try:
        if settings.inference_enabled:
            await WorkerRole.start(runtime)
        app = make_app(runtime)
        if handlers:
            app.add_handlers(r".*", handlers)
        server = make_http_server(app)
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}", runtime
    finally:
        # As `run.py serve` stops: no new connections, the runtime (worker first, sockets closed with 1001), the rest.
        if server is not None:
            server.stop()
        await runtime.close()
        if server is not None:
            await server.close_all_connections()
