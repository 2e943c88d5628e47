"""The application factory: joins each feature's route list and socket ops, and the app settings."""

from __future__ import annotations

import logging
import re
import time

from tornado import web
from tornado.httpserver import HTTPServer

from handlers import (a1111, art, auth, collab, community, discord, health, images, jobs, live, modelhub, posts,
                      presets, rooms, shares, stylize, tokens, users, ws)
from handlers.base import NotFoundHandler, SecurityHeaders
from handlers.frontend import FrontendHandler
from server.clientaddr import ClientAddresses
from server.realtime import OpRegistry
from server.runtime import Runtime

access_log = logging.getLogger("va.access")

# Client frames are small maps; a collaborative update is the largest (see docs/PROTOCOL.md).
WEBSOCKET_MAX_MESSAGE_BYTES = 64 * 1024

# Pings keep proxies from closing idle sockets and find dead peers; Tornado caps the timeout at the interval.
WEBSOCKET_PING_SECS = 20

# Streaming handlers lower this per request (APIHandler.prepare, accept_large_body); it is only the ceiling.
SERVER_MAX_BODY_BYTES = 64 * 1024**3
# Body bytes handed to a streaming handler per call: 64 KiB (Tornado's default) costs a callback per 64 KiB of
# a multi-gigabyte model upload; 1 MiB cuts that 16-fold and is still flat memory per connection.
SERVER_CHUNK_BYTES = 1024 * 1024
# But HTTPServer also makes its `chunk_size` each socket read's size, and Tornado allocates (and zeroes) a new
# buffer of that size for every read, including the one that finds the socket drained: two 1 MiB buffers per
# request or WebSocket frame (a bare Tornado handler: 219 -> 253 us of CPU per request). Reads stay at Tornado's
# 64 KiB; a streaming body still arrives in pieces of up to SERVER_CHUNK_BYTES (the stream reads on until it has
# that many or the socket is drained), and an upload's connection reads in large pieces (accept_large_body).
SOCKET_READ_BYTES = 64 * 1024

# Secrets in query strings (`/ws?token=`, a script's convenience) must not reach the access log.
SECRET_QUERY_RE = re.compile(r"(?<=[?&])(token|access_token|_xsrf)=[^&]*", re.IGNORECASE)


def redact(uri: str) -> str:
    """The URI with the values of secret query arguments replaced."""
    return SECRET_QUERY_RE.sub(r"\1=[redacted]", uri)


FEATURE_HANDLERS = [auth, users, tokens, rooms, jobs, images, art, modelhub, posts, community, collab, presets, stylize,
                    shares, live, ws, health, a1111, discord]


def make_app(runtime: Runtime) -> web.Application:
    """The Tornado application for a started runtime."""
    settings = runtime.settings
    client_addresses = ClientAddresses(settings.trusted_proxies)
    routes: list = []
    socket_ops = OpRegistry()
    for module in FEATURE_HANDLERS:
        routes.extend(module.default_handlers)
        for entry in getattr(module, "socket_ops", ()):
            socket_ops.register(entry)
    routes += [
        (r"/api/.*", NotFoundHandler),
        (r"/(.*)", FrontendHandler, {"path": str(settings.frontend_dist)}),
    ]

    def log_request(handler: web.RequestHandler) -> None:
        """One access-log line and the metrics for every request."""
        status = handler.get_status()
        seconds = handler.request.request_time()
        route = type(handler).__name__
        runtime.http_metrics.observe(handler.request.method or "", route, status, seconds)
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if access_log.isEnabledFor(level):  # the address and the redacted URI cost more than the line
            access_log.log(level, "%d %s %s (%s) %.1fms", status, handler.request.method,
                           redact(handler.request.uri or ""), client_addresses.of_request(handler.request),
                           seconds * 1000)

    app = web.Application(
        routes,
        runtime=runtime,
        socket_ops=socket_ops,
        client_addresses=client_addresses,
        cookie_secret=settings.resolved_cookie_secret(),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Lax", "secure": settings.secure_cookies},
        log_function=log_request,
        debug=False,
        compress_response=True,
        websocket_ping_interval=WEBSOCKET_PING_SECS,
        websocket_ping_timeout=WEBSOCKET_PING_SECS,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        started_at=time.time(),
    )
    app.add_transform(SecurityHeaders)
    return app


def make_http_server(app: web.Application) -> HTTPServer:
    """The HTTP server for the app (`run.py serve`, and the tests' servers, alike)."""
    server = HTTPServer(app, max_body_size=SERVER_MAX_BODY_BYTES, chunk_size=SERVER_CHUNK_BYTES, xheaders=False)
    server.read_chunk_size = SOCKET_READ_BYTES  # TCPServer's, given to each connection's IOStream
    return server
