"""One WebSocket connection's state, independent of the transport and of every feature.

The handler hands every frame to ``Connection.handle`` and calls ``close`` when the socket
goes. A connection keeps its subscriptions (with replay from `since`), its outbox, flood
control, and dispatches each frame to the op registered under its name
(`server/realtime/ops.py`); what a topic or an op means belongs to the feature that
registered it. Events arrive from the hub through ``deliver`` (already encoded, shared by
every subscriber); events waiting for the same socket are coalesced into one msgpack array
frame by the `Flusher`. The transport's framing (``frame``) is applied once per distinct
batch in a flush pass: every socket of a room that waits for the same events gets the
same pre-framed bytes (as `websockets.broadcast()` does), so a pass costs one encode per
distinct payload and one write per socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.auth import Principal
from server.errors import NOT_REQUEST_FAILURES, AppError, InvalidInput, Unauthenticated
from server.hub import Hub, Reset
from server.hub import frames
from server.realtime.flusher import Flusher
from server.realtime.ops import Later, OpCall, OpRegistry
from server.topics import TopicPolicy

log = logging.getLogger(__name__)

MAX_REF_CHARS = 64
# Bytes handed to the transport and not yet taken by the kernel. Past this, events wait in the outbox as
# whole frames, so a socket dropped as too slow gets its close frame (4008) right behind this little,
# not behind megabytes it would have to read first; and what waits is dropped with it.
WRITE_WINDOW_BYTES = 64 * 1024
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_TOO_SLOW = 1000, 1001, 1003, 1008, 4008


@dataclass
class _Subscription:
    last_seq: int = 0
    replaying: bool = True
    pending: list[tuple[int | None, bytes]] = field(default_factory=list)


class Connection:
    """A subscriber of the hub and the dispatcher of one socket's client ops."""

    def __init__(
        self,
        principal: Principal | None,
        hub: Hub,
        topics: TopicPolicy,
        ops: OpRegistry,
        services: Any,
        send: Callable[[bytes], Awaitable[None] | None],
        close: Callable[[int, str], None],
        *,
        flusher: Flusher,
        frame: Callable[[bytes], bytes] | None = None,
        max_frames_per_sec: int,
        max_send_buffer_bytes: int,
        max_subscriptions: int = 200,
        replay_guard: Callable[[str], Awaitable[None]] | None = None,
    ):
        # Topics one socket may watch at once, and a check (raising RateLimited) before each replay a client
        # asks for, given the topic's kind (a room's replay reads up to 1,001 rows).
        self._max_subscriptions = max_subscriptions
        self._replay_guard = replay_guard
        # More frames than this in one second is a flood: the socket is closed with 1008.
        self._max_frames_per_sec = max_frames_per_sec
        # A reader this far behind is dropped rather than allowed to hold memory or stall a room.
        self._max_send_buffer_bytes = max_send_buffer_bytes
        self.id = uuid.uuid4().hex[:16]
        self.principal = principal
        self._hub = hub
        self._topics = topics
        self.ops = ops
        self._services = services
        # ``send`` takes what ``frame`` made of a payload (the whole frame for the wire, written as is).
        self._send = send
        self._frame = frame
        self._close = close
        self._subs: dict[str, _Subscription] = {}
        self._outbox: list[bytes] = []
        self._outbox_events = 0  # an outbox entry may hold a run of several events
        self._outbox_bytes = 0
        self._flusher = flusher
        self._in_flight_bytes = 0
        self._answering: set[asyncio.Future] = set()  # ops whose reply comes `Later`
        self._window_start = time.monotonic()
        self._window_frames = 0
        self._closed = False
        self._control_topic = f"session:{principal.session_id}" if principal and principal.session_id else None

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        if self._control_topic:
            # Log-out publishes here, so every socket of that session closes, in any process.
            await self._hub.subscribe(self._control_topic, self)

    # Outgoing

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        if self._closed:
            return
        if topic == self._control_topic:
            self.shutdown(CLOSE_NORMAL, "logged out")
            return
        sub = self._subs.get(topic)
        if sub is None:
            return
        if sub.replaying:
            sub.pending.append((seq, frame))
            return
        if seq is not None:
            if seq <= sub.last_seq:
                return
            sub.last_seq = seq
        self._enqueue(frame)

    def deliver_run(self, topic: str, events: list[tuple[int, bytes]], joined: bytes) -> None:
        """Consecutive stored events at once (a commit's batch): ``joined`` goes into the outbox whole; event
        by event (as ``deliver``) when the socket is replaying or has seen some of them already."""
        sub = self._subs.get(topic)
        if sub is None or sub.replaying or events[0][0] <= sub.last_seq or self._closed:
            for seq, frame in events:
                self.deliver(topic, seq, frame)
            return
        sub.last_seq = events[-1][0]
        self._enqueue(joined, len(events))

    def reset(self, topic: str, epoch: str) -> None:
        """The topic's history restarted (Redis lost it): its seq counts from 1 again. The client is told,
        so it reloads what it shows and accepts the new seqs; without this both sides dropped them as seen."""
        sub = self._subs.get(topic)
        if self._closed or sub is None:
            return
        sub.last_seq = 0
        sub.pending = [(seq, frame) for seq, frame in sub.pending if seq is None]
        self._emit({"type": "reset", "topic": topic, "epoch": epoch, "seq": 0})

    def _enqueue(self, frame: bytes, events: int = 1) -> None:
        self._outbox.append(frame)
        self._outbox_events += events
        self._outbox_bytes += len(frame)
        if len(self._outbox) == 1:
            self._flusher.mark(self)
        elif (self._in_flight_bytes >= WRITE_WINDOW_BYTES
              and self._in_flight_bytes + self._outbox_bytes > self._max_send_buffer_bytes):
            # Judged only while the transport is backed up, so one large burst to a reader that keeps up is not "slow".
            self._outbox, self._outbox_events, self._outbox_bytes = [], 0, 0
            self.shutdown(CLOSE_TOO_SLOW, "send buffer full: the client reads too slowly")

    def _emit(self, event: dict[str, Any]) -> None:
        self._enqueue(frames.encode(event))

    def emit(self, event: dict[str, Any]) -> None:
        """Send one event to this socket alone."""
        self._emit(event)

    def revoke(self, topic: str, event: dict[str, Any]) -> None:
        """Stop delivering a topic the socket may no longer watch (removed from a session), saying why."""
        if self._closed or self._subs.pop(topic, None) is None:
            return
        self._emit({**event, "topic": topic})
        asyncio.ensure_future(self._left(topic)).add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _left(self, topic: str) -> None:
        await self._hub.unsubscribe(topic, self)
        await self._topics.left(self, topic)

    def flush(self, shared: dict[Any, bytes] | None = None) -> None:
        """Write what waits, as one frame. ``shared`` (one flush pass's) maps a batch to its framed bytes, so
        sockets waiting for the same events share one encoding (the batch's frames are the hub's shared
        objects: the key hashes and compares cheaply)."""
        if self._closed or not self._outbox or self._in_flight_bytes >= WRITE_WINDOW_BYTES:
            return  # with the window full, the outbox waits: `_written` flushes again once the kernel takes more
        batch, events = self._outbox, self._outbox_events
        self._outbox, self._outbox_events, self._outbox_bytes = [], 0, 0
        key = batch[0] if len(batch) == 1 else tuple(batch)
        data = shared.get(key) if shared is not None else None
        if data is None:
            data = batch[0] if events == 1 else frames.array_frame(batch, events)
            if self._frame is not None:
                data = self._frame(data)
            if shared is not None:
                shared[key] = data
        try:
            written = self._send(data)
        except Exception:  # the transport is gone; on_close will follow
            return
        if written is not None:  # the kernel did not take it all: the rest waits in the transport
            size = len(data)
            self._in_flight_bytes += size
            asyncio.ensure_future(written).add_done_callback(lambda done: self._written(size, done))

    def _written(self, size: int, done: asyncio.Future) -> None:
        self._in_flight_bytes -= size
        if not done.cancelled():
            done.exception()  # a closed peer is normal here; on_close follows
        if self._outbox and not self._closed and self._in_flight_bytes < WRITE_WINDOW_BYTES:
            self._flusher.mark(self)

    def shutdown(self, code: int, reason: str) -> None:
        if not self._closed:
            self.flush()
            self._closed = True
            self._close(code, reason)

    # Incoming

    async def handle(self, data: bytes) -> None:
        """Handle one binary frame; bad input gets an `error` frame, never a crash."""
        if self._closed or self._flooding():
            return
        try:
            message = frames.decode(data)
        except Exception:  # msgpack raises many types for garbage; all mean the same thing
            self._emit({"type": "error", "code": "bad_frame", "message": "The frame is not msgpack."})
            return
        ref = message.get("ref") if isinstance(message, dict) else None
        if not isinstance(ref, (str, int)) or (isinstance(ref, str) and len(ref) > MAX_REF_CHARS):
            ref = None
        name = message.get("op") if isinstance(message, dict) else None
        try:
            result = await self._run_op(message, ref)
        except BaseException as exc:
            self._fail(exc, name, ref)
            return
        if isinstance(result, Later):
            self._answer_later(result, name, ref)
        else:
            self._reply(result, ref)

    async def _run_op(self, message: Any, ref: str | int | None) -> dict[str, Any] | Later | None:
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise InvalidInput("A frame must be a map with a string `op`.", code="bad_frame")
        op = self.ops.get(message["op"])
        if op is None:
            raise InvalidInput(f"Unknown op {message['op'][:40]!r}.", code="unknown_op")
        if op.signed_in and self.principal is None:
            raise Unauthenticated("Sign in to do that.")
        args = op.arguments({k: v for k, v in message.items() if k not in ("op", "ref")})
        return await op.run(OpCall(socket=self, args=args, services=self._services, ref=ref))

    def _answer_later(self, later: Later, name: Any, ref: str | int | None) -> None:
        """Reply once ``later.reply`` is done, from its done callback: no task of our own per frame (a chat
        message's reply waits for its commit; the socket reads its next frame meanwhile)."""
        answering = asyncio.ensure_future(later.reply)
        self._answering.add(answering)  # held: the loop keeps only a weak reference to a task

        def answer(done: asyncio.Future) -> None:
            self._answering.discard(done)
            if done.cancelled():
                return
            failure = done.exception()
            if failure is not None:
                self._fail(failure, name, ref)
            else:
                result = done.result()
                self._reply(later.frame(result) if later.frame is not None else result, ref)

        answering.add_done_callback(answer)

    def _reply(self, result: dict[str, Any] | None, ref: str | int | None) -> None:
        if result is not None:
            if ref is not None:
                result["ref"] = ref
            self._emit(result)

    def _fail(self, exc: BaseException, name: Any, ref: str | int | None) -> None:
        """An op's failure becomes an `error` frame, never a crash (what stops the process goes on up)."""
        if isinstance(exc, AppError):
            self._emit({"type": "error", **exc.to_json(), **({"ref": ref} if ref is not None else {})})
            return
        if isinstance(exc, NOT_REQUEST_FAILURES):
            raise exc
        # Anything else, a native library's panic included (PyO3's is a BaseException).
        log.error("op %r failed", name, exc_info=exc)
        self._emit({"type": "error", "code": "internal_error", "message": "Something went wrong on our side.",
                    **({"ref": ref} if ref is not None else {})})

    def _flooding(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_frames = now, 0
        self._window_frames += 1
        if self._window_frames > self._max_frames_per_sec:
            self.shutdown(CLOSE_POLICY, f"more than {self._max_frames_per_sec} frames per second")
            return True
        return False

    def subscribed(self, topic: str) -> bool:
        return topic in self._subs

    async def subscribe(self, topic: Any, since: Any = None, *, by_client: bool = False,
                        ref: str | int | None = None) -> None:
        """Watch a topic the policy lets this socket watch, replaying what came after ``since``; emits the ack.

        ``by_client``: asked for in a `sub` frame, so the socket's limits apply (the socket's own
        subscriptions, such as the job a `gen.submit` made, are not limited).
        """
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise InvalidInput("`since` must be a non-negative integer seq.", data={"field": "since"})
        kind, _ident = await self._topics.check(self.principal, topic)
        if by_client:
            if topic not in self._subs and len(self._subs) >= self._max_subscriptions:
                raise InvalidInput(f"A socket may watch at most {self._max_subscriptions} topics; unsub from some "
                                   f"first.", code="too_many_subscriptions", data={"limit": self._max_subscriptions})
            if since is not None and self._replay_guard is not None:
                await self._replay_guard(kind)
        ack: dict[str, Any] = {"type": "ack", "topic": topic, **({"ref": ref} if ref is not None else {})}
        if topic in self._subs:
            # Already watching (e.g. gen.submit subscribed it): still answer the replay asked for.
            self._emit({**ack, "seq": self._subs[topic].last_seq})
            if since is not None:
                await self._replay_into(topic, since)
            return
        sub = self._subs[topic] = _Subscription()
        await self._hub.subscribe(topic, self)
        reply: list[dict[str, Any]] = []
        replayed: list[tuple[int, bytes]] = []
        try:
            current = await self._hub.current_seq(topic)
            if since is None:
                sub.last_seq = current
            else:
                result = await self._hub.replay(topic, since)
                if isinstance(result, Reset):
                    reply.append({"type": "reset", "topic": topic, "epoch": result.epoch, "seq": result.seq})
                    sub.last_seq = result.seq
                else:
                    replayed = result
                    sub.last_seq = since
        except BaseException:  # e.g. Redis does not answer (503 unavailable): no half-made subscription
            self._subs.pop(topic, None)
            await self._hub.unsubscribe(topic, self)
            raise
        self._emit({**ack, "seq": current})
        for event in reply:
            self._emit(event)
        for seq, frame in replayed:
            if seq > sub.last_seq:
                sub.last_seq = seq
                self._enqueue(frame)
        sub.replaying = False
        pending, sub.pending = sub.pending, []
        for seq, frame in pending:
            self.deliver(topic, seq, frame)
        await self._topics.joined(self, topic)

    async def _replay_into(self, topic: str, since: int) -> None:
        result = await self._hub.replay(topic, since)
        if isinstance(result, Reset):
            self._emit({"type": "reset", "topic": topic, "epoch": result.epoch, "seq": result.seq})
            return
        sub = self._subs[topic]
        for seq, frame in result:
            self._enqueue(frame)
            sub.last_seq = max(sub.last_seq, seq)

    async def unsubscribe(self, topic: str) -> None:
        if isinstance(topic, str) and self._subs.pop(topic, None) is not None:
            await self._left(topic)

    async def close(self) -> None:
        """Leave every topic; called once the socket is gone."""
        self._closed = True
        topics, self._subs = list(self._subs), {}
        for topic in topics:
            await self._left(topic)
        if self._control_topic:
            await self._hub.unsubscribe(self._control_topic, self)
