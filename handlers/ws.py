"""The one WebSocket endpoint: a transport adapter around ``server.realtime.Connection``."""

from __future__ import annotations

import logging
import struct
from typing import Any
from urllib.parse import urlsplit

from asyncio import Future

from tornado import websocket
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import HTTPError
from tornado.websocket import WebSocketClosedError

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from handlers.base import BaseHandler
from server.auth import Principal
from server.credential_watch import CredentialWatch
from server.errors import Unauthenticated
from server.realtime import CLOSE_UNSUPPORTED, Connection
from server.realtime.ops import NoArgs, OpCall, op

log = logging.getLogger(__name__)

BINARY_OPCODE = 0x2
FIN = 0x80
# A socket we close gets this long to read its close frame, whose code says why (4008: too slow), before
# it is dropped. Tornado's own wait is 5 s, holding a peer that never reads (and its buffers) that long.
CLOSE_GRACE_SECS = 2.0


def binary_frame(data: bytes) -> bytes:
    """One unmasked, uncompressed binary frame (RFC 6455 5.2), as a server sends it. Built once per
    payload in a flush pass and shared by every socket that gets the same events."""
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", FIN | BINARY_OPCODE, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", FIN | BINARY_OPCODE, 126, size)
    else:
        header = struct.pack("!BBQ", FIN | BINARY_OPCODE, 127, size)
    return header + data


def write_now(stream: IOStream, wire: bytes) -> Future | None:
    """Write to the socket at once when nothing waits before it; None when the kernel took it all.

    IOStream.write makes a Future, its callbacks and a loop turn for every write, which at 1,000
    sockets a pass is most of the cost of fan-out; like asyncio's transports (and so `websockets`),
    a write to an idle socket goes straight to send(). Only what the kernel does not take (or any
    write behind bytes already waiting, so the order holds) goes through the stream, whose Future
    says when it is out. A plain IOStream only: TLS goes through the stream as before."""
    if stream.closed():
        raise StreamClosedError()
    if type(stream) is IOStream and not stream._write_buffer and not stream._connecting:
        try:
            sent = stream.socket.send(wire)
        except BlockingIOError:
            sent = 0
        except OSError:
            return stream.write(wire)  # the stream meets the same error, closes and reports it
        if sent == len(wire):
            return None
        wire = memoryview(wire)[sent:]
    return stream.write(wire)


class SocketHandler(websocket.WebSocketHandler, BaseHandler):
    connection: Connection | None = None
    watch: CredentialWatch | None = None

    async def prepare(self) -> None:
        # Authorisation happens before the upgrade: a bad token is an HTTP 401, not a socket.
        try:
            self.principal = await self._principal()
        except Exception as exc:
            if getattr(exc, "status", None) == 401:
                raise HTTPError(401, "invalid or revoked token") from None
            raise

    async def _principal(self) -> Principal | None:
        token = self.get_query_argument("token", None)
        if token:
            principal = await self.auth.principal_for_token(token)
            if principal is None:
                raise HTTPError(401, "invalid or revoked token")
            return principal
        return await self.resolve_principal()

    async def _current_principal(self) -> Principal | None:
        """The socket's credential resolved again (after a revocation or a role change); None if gone."""
        try:
            return await self._principal()
        except (HTTPError, Unauthenticated):  # a revoked token (in the query, or as a bearer header)
            return None

    def check_origin(self, origin: str) -> bool:
        """Exact match against our own origin and the configured list (no substring tricks)."""
        own = f"{self.request.protocol}://{self.request.host}"
        allowed = {own, *self.runtime.settings.allowed_origins}
        parsed = urlsplit(origin)
        return f"{parsed.scheme}://{parsed.netloc}" in allowed and origin.rstrip("/") in allowed

    def get_compression_options(self) -> None:
        return None  # previews are already compressed images; deflate would only cost CPU

    async def open(self) -> None:
        # Events leave in flush passes, already coalesced: Nagle's algorithm would hold a pass's frame until the
        # client acknowledged the last one (up to its delayed-ACK timer, ~40 ms), a stall on every round trip.
        self.set_nodelay(True)
        runtime = self.runtime
        self.connection = Connection(
            self.principal, runtime.hub, runtime.topics, self.settings["socket_ops"], runtime,
            send=self._send_framed,
            close=self._close_then_drop,
            flusher=runtime.flusher,
            frame=binary_frame,
            max_frames_per_sec=runtime.settings.ws_max_frames_per_sec,
            max_send_buffer_bytes=runtime.settings.ws_max_send_buffer_bytes,
            max_subscriptions=runtime.settings.ws_max_subscriptions,
            replay_guard=self._replay_guard,
        )
        runtime.connections.add(self.connection)
        await self.connection.start()
        self.watch = CredentialWatch(runtime.hub, self.connection, self._current_principal)
        await self.watch.start()

    async def _replay_guard(self, kind: str) -> None:
        """Room replays per user, or per client address when anonymous (a new socket does not reset the count).

        A room's replay reads up to 1,001 rows from the database; other topics replay from the hub's capped
        history, and a page re-subscribes every job it shows after a reconnect."""
        if kind != "room":
            return
        settings = self.runtime.settings
        who = f"user:{self.principal.user.id}" if self.principal else f"ip:{self.client_ip}"
        await self.runtime.limiter.require(f"ws-replay:{who}", settings.ws_replay_limit,
                                           settings.ws_replay_window_secs, "Too many replays (sub with since)")

    def _send_framed(self, wire: bytes) -> Future | None:
        """Write one frame that `binary_frame` built; a Future while part of it waits, else None.

        `write_message` frames every message again and wraps every write in a new Task (tens of
        microseconds), which dominates fan-out to many sockets. Pinned Tornado (requirements.txt)
        keeps the private attributes used here stable; tests/handlers/test_ws_chat.py and
        tests/handlers/test_ws_write.py exercise them on every event."""
        protocol = self.ws_connection
        if protocol is None or protocol.is_closing() or protocol.stream is None:
            raise WebSocketClosedError()
        protocol._message_bytes_out += len(wire)
        protocol._wire_bytes_out += len(wire)
        try:
            return write_now(protocol.stream, wire)
        except StreamClosedError:
            raise WebSocketClosedError() from None

    def _close_then_drop(self, code: int, reason: str) -> None:
        self.close(code, reason)
        IOLoop.current().call_later(CLOSE_GRACE_SECS, self._drop)

    def _drop(self) -> None:
        """The peer did not answer our close frame in time: tear the connection down (on_close follows)."""
        protocol = self.ws_connection
        if protocol is not None and protocol.stream is not None and not protocol.stream.closed():
            protocol.stream.close()

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.close(CLOSE_UNSUPPORTED, "frames must be binary msgpack")
            return
        if self.connection is not None:
            # A revocation or role change made elsewhere is taken in before the frame is handled.
            await self.runtime.auth.sync_changes()
            if self.watch is not None:
                await self.watch.settled()
            await self.connection.handle(message)

    def on_close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            self.runtime.connections.discard(connection)
            self.runtime.spawn(connection.close())
        if self.watch is not None:
            watch, self.watch = self.watch, None
            self.runtime.spawn(watch.close())


class SubArgs(BaseModel):
    topic: Any = None  # checked by the topic policy, which names the topics there are
    since: Any = None


class UnsubArgs(BaseModel):
    topic: Any = None


@op("ping", signed_in=False)
async def ping(call: OpCall[NoArgs]) -> dict[str, Any]:
    """Liveness from the client's side."""
    return {"type": "pong"}


class EchoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(max_length=200)


@op("ping.echo", EchoArgs, signed_in=False)
async def ping_echo(call: OpCall[EchoArgs]) -> dict[str, Any]:
    """A pong that carries the client's text back (round trips measured end to end, frame checks)."""
    return {"type": "pong", "echo": call.args.text}


@op("sub", SubArgs, signed_in=False)
async def sub(call: OpCall[SubArgs]) -> None:
    """Watch a topic, replaying what came after `since`; the ack (with the ref) is sent by the socket."""
    await call.socket.subscribe(call.args.topic, call.args.since, by_client=True, ref=call.ref)


@op("unsub", UnsubArgs, signed_in=False)
async def unsub(call: OpCall[UnsubArgs]) -> dict[str, Any]:
    await call.socket.unsubscribe(call.args.topic)
    return {"type": "ack", "topic": call.args.topic}


default_handlers = [
    (r"/ws", SocketHandler),
]
socket_ops = [ping, ping_echo, sub, unsub]
