"""One WebSocket connection's state, independent of the transport.

The handler hands every frame to ``Connection.handle`` and calls ``close`` when
the socket goes. Events arrive from the hub through ``deliver`` (already encoded,
shared by every subscriber); events waiting for the same socket are coalesced
into one msgpack array frame on the next loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.auth import Principal
from server.chat import ChatService, check_room_name
from server.collab.service import CollabService
from server.errors import NOT_REQUEST_FAILURES, AppError, InvalidInput, RateLimited, Unauthenticated
from server.hub import Hub, Reset
from server.jobs import JobService
from server.hub import frames
from server.presence import PRESENCE_REFRESH_SECS
from server.topics import TopicPolicy

log = logging.getLogger(__name__)

MAX_REF_CHARS = 64
# At most one write pass per this interval while events keep coming: busy sockets' events are
# coalesced into array frames (far fewer writes); after a quiet spell the first event leaves at once.
COALESCE_INTERVAL_SECS = 0.010
# Bytes handed to the transport and not yet taken by the kernel. Past this, events wait in the outbox as
# whole frames, so a socket dropped as too slow gets its close frame (4008) right behind this little,
# not behind megabytes it would have to read first; and what waits is dropped with it.
WRITE_WINDOW_BYTES = 64 * 1024
CLOSE_NORMAL, CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_TOO_SLOW = 1000, 1003, 1008, 4008


class Flusher:
    """Writes every socket's waiting events in passes, at most one pass per interval while busy.

    Writes are the cost of fan-out (Tornado spends tens of microseconds per frame), so
    while events keep arriving they are held until the next pass and leave as one array
    frame per socket; when idle, a pass runs at once and adds no delay.
    """

    def __init__(self, interval_secs: float = COALESCE_INTERVAL_SECS):
        self._interval = interval_secs
        self._dirty: dict["Connection", None] = {}
        self._scheduled = False
        self._last_pass = 0.0

    def mark(self, connection: "Connection") -> None:
        self._dirty[connection] = None
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            wait = self._last_pass + self._interval - loop.time()
            if wait > 0:
                loop.call_later(wait, self._run)
            else:
                loop.call_soon(self._run)

    def flush_now(self) -> None:
        """Write what every socket has waiting, now (before sockets close on shutdown)."""
        self._run()

    def _run(self) -> None:
        self._scheduled = False
        self._last_pass = asyncio.get_running_loop().time()
        dirty, self._dirty = self._dirty, {}
        for connection in dirty:
            connection.flush()


@dataclass
class _Subscription:
    last_seq: int = 0
    replaying: bool = True
    pending: list[tuple[int | None, bytes]] = field(default_factory=list)


class Connection:
    """A subscriber of the hub and the handler of one socket's client ops."""

    def __init__(
        self,
        principal: Principal | None,
        hub: Hub,
        topics: TopicPolicy,
        chat: ChatService,
        jobs: JobService,
        send: Callable[[bytes], Awaitable[None] | None],
        close: Callable[[int, str], None],
        *,
        flusher: Flusher,
        max_frames_per_sec: int,
        max_send_buffer_bytes: int,
        collab: CollabService | None = None,
        max_subscriptions: int = 200,
        replay_guard: Callable[[], Awaitable[None]] | None = None,
    ):
        # Topics one socket may watch at once, and a check (raising RateLimited) before each room replay a
        # client asks for: a `sub` with `since` reads up to 1,001 rows.
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
        self._chat = chat
        self._jobs = jobs
        self._collab = collab
        self._send = send
        self._close = close
        self._subs: dict[str, _Subscription] = {}
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._flusher = flusher
        self._in_flight_bytes = 0
        self._window_start = time.monotonic()
        self._window_frames = 0
        self._closed = False
        self._heartbeat: asyncio.Task | None = None
        self._control_topic = f"session:{principal.session_id}" if principal and principal.session_id else None
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]] = {
            "ping": self._op_ping, "sub": self._op_sub, "unsub": self._op_unsub,
            "chat.send": self._op_chat_send, "chat.edit": self._op_chat_edit,
            "chat.delete": self._op_chat_delete, "typing": self._op_typing,
            "gen.submit": self._op_gen_submit, "gen.cancel": self._op_gen_cancel,
            "art.submit": self._op_art_submit, "collab.update": self._op_collab_update,
        }

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

    def reset(self, topic: str, epoch: str) -> None:
        """The topic's history restarted (Redis lost it): its seq counts from 1 again. The client is told,
        so it reloads what it shows and accepts the new seqs; without this both sides dropped them as seen."""
        sub = self._subs.get(topic)
        if self._closed or sub is None:
            return
        sub.last_seq = 0
        sub.pending = [(seq, frame) for seq, frame in sub.pending if seq is None]
        self._emit({"type": "reset", "topic": topic, "epoch": epoch, "seq": 0})

    def _enqueue(self, frame: bytes) -> None:
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if len(self._outbox) == 1:
            self._flusher.mark(self)
        elif (self._in_flight_bytes >= WRITE_WINDOW_BYTES
              and self._in_flight_bytes + self._outbox_bytes > self._max_send_buffer_bytes):
            # Judged only while the transport is backed up, so one large burst to a reader that keeps up is not "slow".
            self._outbox, self._outbox_bytes = [], 0
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
        if topic.startswith("room:") and self.principal is not None:
            await self._chat.leave(topic[5:], self.principal.user, self.id)
        elif topic.startswith("collab:") and self._collab is not None:
            await self._collab.leave(self, topic[7:])

    def flush(self) -> None:
        if self._closed or not self._outbox or self._in_flight_bytes >= WRITE_WINDOW_BYTES:
            return  # with the window full, the outbox waits: `_written` flushes again once the kernel takes more
        batch, self._outbox, self._outbox_bytes = self._outbox, [], 0
        data = batch[0] if len(batch) == 1 else frames.array_frame(batch)
        self._in_flight_bytes += len(data)
        try:
            written = self._send(data)
        except Exception:  # the transport is gone; on_close will follow
            self._in_flight_bytes -= len(data)
            return
        if written is None:
            self._in_flight_bytes -= len(data)
        else:
            size = len(data)
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
        try:
            if not isinstance(message, dict) or not isinstance(message.get("op"), str):
                raise InvalidInput("A frame must be a map with a string `op`.", code="bad_frame")
            handler = self._ops.get(message["op"])
            if handler is None:
                raise InvalidInput(f"Unknown op {message['op'][:40]!r}.", code="unknown_op")
            reply = await handler(message)
        except AppError as exc:
            error = {"type": "error", "code": exc.code, "message": exc.message}
            if isinstance(exc, RateLimited):
                error["retry_after"] = exc.retry_after_secs
            if ref is not None:
                error["ref"] = ref
            self._emit(error)
            return
        except NOT_REQUEST_FAILURES:
            raise
        except BaseException:  # anything else, a native library's panic included (PyO3's is a BaseException)
            log.exception("op %r failed", message.get("op"))
            self._emit({"type": "error", "code": "internal_error", "message": "Something went wrong on our side.",
                        **({"ref": ref} if ref is not None else {})})
            return
        if reply is not None:
            if ref is not None:
                reply["ref"] = ref
            self._emit(reply)

    def _flooding(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_frames = now, 0
        self._window_frames += 1
        if self._window_frames > self._max_frames_per_sec:
            self.shutdown(CLOSE_POLICY, f"more than {self._max_frames_per_sec} frames per second")
            return True
        return False

    def _user(self):
        if self.principal is None:
            raise Unauthenticated("Sign in to do that.")
        return self.principal.user

    def _room_of(self, message: dict[str, Any]) -> str:
        room = check_room_name(message.get("room"))
        if f"room:{room}" not in self._subs:
            raise InvalidInput(f"Subscribe to room:{room} first.", code="not_subscribed")
        return room

    async def _op_ping(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong"}

    async def _op_sub(self, message: dict[str, Any]) -> dict[str, Any] | None:
        topic, since = message.get("topic"), message.get("since")
        if since is not None and (not isinstance(since, int) or since < 0):
            raise InvalidInput("`since` must be a non-negative integer seq.")
        kind, ident = await self._topics.check(self.principal, topic)
        # Frames from the client carry `op`; the socket's own subscriptions (a job it submitted) are not limited.
        if "op" in message:
            if topic not in self._subs and len(self._subs) >= self._max_subscriptions:
                raise InvalidInput(f"A socket may watch at most {self._max_subscriptions} topics; unsub from some "
                                   f"first.", code="too_many_subscriptions")
            # A room's replay reads up to 1,001 rows from the database; other topics replay from the hub's
            # capped history, and a page re-subscribes every job it shows after a reconnect.
            if since is not None and kind == "room" and self._replay_guard is not None:
                await self._replay_guard()
        if topic in self._subs:
            ack = {"type": "ack", "topic": topic, "seq": self._subs[topic].last_seq}
            if since is None:
                return ack
            # Already watching (e.g. gen.submit subscribed it): still answer the replay asked for.
            if "ref" in message:
                ack["ref"] = message["ref"]
            self._emit(ack)
            await self._replay_into(topic, since)
            return None
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
        ack = {"type": "ack", "topic": topic, "seq": current}
        if "ref" in message:
            ack["ref"] = message["ref"]
        self._emit(ack)
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
        if kind == "room":
            await self._enter_room(ident)
        elif kind == "collab" and self._collab is not None:
            await self._collab.join(self, ident)
        return None

    async def _replay_into(self, topic: str, since: int) -> None:
        result = await self._hub.replay(topic, since)
        if isinstance(result, Reset):
            self._emit({"type": "reset", "topic": topic, "epoch": result.epoch, "seq": result.seq})
            return
        sub = self._subs[topic]
        for seq, frame in result:
            self._enqueue(frame)
            sub.last_seq = max(sub.last_seq, seq)

    async def _enter_room(self, room: str) -> None:
        self._emit({"type": "presence", "topic": f"room:{room}", "users": await self._chat.present_users(room)})
        if self.principal is not None:
            await self._chat.join(room, self.principal.user, self.id)
            self._ensure_heartbeat()

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._refresh_presence())

    async def _refresh_presence(self) -> None:
        while not self._closed:
            # Jittered so thousands of sockets opened together do not refresh together.
            await asyncio.sleep(PRESENCE_REFRESH_SECS * random.uniform(0.8, 1.0))
            for topic in list(self._subs):
                if topic.startswith("room:") and self.principal is not None:
                    await self._chat.refresh_presence(topic[5:], self.principal.user, self.id)

    async def _op_unsub(self, message: dict[str, Any]) -> dict[str, Any]:
        topic = message.get("topic")
        if isinstance(topic, str) and self._subs.pop(topic, None) is not None:
            await self._left(topic)
        return {"type": "ack", "topic": topic}

    async def _op_chat_send(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        room = self._room_of(message)
        ref = message.get("ref")
        client_ref = str(ref)[:MAX_REF_CHARS] if ref is not None else None
        stored = await self._chat.send(user, room, message.get("text"), client_ref)
        return {"type": "ack", "message": stored}

    async def _op_chat_edit(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        stored = await self._chat.edit(user, self._room_of(message), message.get("message"), message.get("text"))
        return {"type": "ack", "message": stored}

    async def _op_chat_delete(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        await self._chat.delete(user, self._room_of(message), message.get("message"))
        return {"type": "ack"}

    async def _op_typing(self, message: dict[str, Any]) -> None:
        user = self._user()
        await self._chat.typing(self._room_of(message), user)
        return None

    async def _op_gen_submit(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        fields = {k: v for k, v in message.items() if k not in ("op", "ref")}
        init_image = fields.get("init_image")
        if init_image is not None and not isinstance(init_image, bytes):
            raise InvalidInput("`init_image` must be raw bytes (msgpack bin).")
        job = await self._jobs.submit(user, fields, init_image)
        # The submitter watches its job from the first event: replay from seq 0.
        await self._op_sub({"topic": f"job:{job['id']}", "since": 0})
        return {"type": "ack", "job": job}

    async def _op_art_submit(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        image, preset = message.get("image"), message.get("preset")
        if not isinstance(image, bytes):
            raise InvalidInput("`image` must be raw bytes (msgpack bin).")
        if preset is not None and not isinstance(preset, str):
            raise InvalidInput("`preset` must be a string.")
        job = await self._jobs.submit(user, {"kind": "art", "preset": preset}, image)
        # As for gen.submit: the socket watches the job from its first event.
        await self._op_sub({"topic": f"job:{job['id']}", "since": 0})
        return {"type": "ack", "job": job}

    async def _op_collab_update(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self._collab is None:
            raise InvalidInput("Collaborative sessions are not available on this socket.", code="unknown_op")
        session = message.get("session")
        # Keystrokes are many: only a frame that asks (with a ref) gets an ack, sent once the edit is stored.
        confirm = "ref" in message
        for data in await self._collab.receive(self, session, message.get("data"), confirm=confirm):
            self._emit({"type": "collab.sync", "topic": f"collab:{session}", "session": session, "data": data})
        return {"type": "ack"} if confirm else None

    async def _op_gen_cancel(self, message: dict[str, Any]) -> dict[str, Any]:
        user = self._user()
        job_id = message.get("job")
        if not isinstance(job_id, str):
            raise InvalidInput("`job` must be a job id.")
        return {"type": "ack", "job": await self._jobs.cancel(user, job_id)}

    async def close(self) -> None:
        """Leave every topic and room; called once the socket is gone."""
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        topics, self._subs = list(self._subs), {}
        for topic in topics:
            await self._left(topic)
        if self._control_topic:
            await self._hub.unsubscribe(self._control_topic, self)
