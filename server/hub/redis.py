"""The Redis hub: pub/sub fans events out across processes, a capped Stream per topic keeps history.

Redis pub/sub is at-most-once: a message published while a process's pub/sub
connection is down is gone. So every sequenced event is also in a Stream (or,
for durable topics, in the database), each process remembers the last seq it
delivered per topic, and a jump in seq — or a reconnect — makes it backfill the
missing events from there before delivering the new one.

Redis keeps nothing on disk here, so a restart loses every counter: seq counts
from 1 again. Each counter therefore has an epoch beside it, made new whenever
the counter starts (seq 1) and carried by every event; a process that sees a
topic's epoch change tells its subscribers (``reset``) and delivers on from 1.

While Redis does not answer, a hub-sequenced publish (and reading a seq or
history) raises ``Unavailable``; a durable event (already stored) and an
ephemeral one are not published, and a subscription is made once Redis is back.

A batch of durable events goes out as one message per topic, "@seq:size,seq:size,...\n" followed by the
events' packed bytes one after another, so every process fans the batch out as one run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis.asyncio as redis

from server.errors import Unavailable
from server.hub import frames
from server.hub.base import HubCore, Reset, Subscriber, by_topic
from server.redis_client import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

DEFAULT_HISTORY_EVENTS = 500
# A topic nobody publishes to for this long loses its seq and history (bounded Redis memory).
TOPIC_TTL_SECS = 7 * 24 * 3600
RECONNECT_DELAY_SECS = 0.5
LISTEN_POLL_SECS = 1.0

# INCR the seq, append to the capped stream with the seq as its id, publish "seq epoch\n" + payload.
# One script, so the seq order is the stream order is the publish order. The epoch (KEYS[4]) is set
# anew whenever the counter starts, from the candidate the caller sends (ARGV[4]), and expires with it.
PUBLISH_SEQUENCED = """
local seq = redis.call('INCR', KEYS[1])
local epoch = redis.call('GET', KEYS[4])
if seq == 1 or not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[4], epoch)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. epoch .. '\\n' .. ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return seq
"""
UNAVAILABLE_MESSAGE = "Live updates are unavailable for a moment (Redis does not answer); try again shortly."
UNAVAILABLE_RETRY_SECS = 5


class RedisHub(HubCore):
    def __init__(self, client: redis.Redis, prefix: str, history_events: int = DEFAULT_HISTORY_EVENTS):
        super().__init__()
        self._redis = client
        self._prefix = prefix + "hub:"
        self._history_events = history_events
        self._publish_sequenced = client.register_script(PUBLISH_SEQUENCED)
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._has_channels = asyncio.Event()
        self._reconnected = False
        # Channels whose SUBSCRIBE could not reach Redis; the listener makes them once it answers.
        self._unsubscribed: set[str] = set()
        self._listener: asyncio.Task | None = None
        # What `unbroken` says: whether every channel is subscribed on a live connection, and how many
        # times this process may have missed messages (a lost connection, a reconnect).
        self._hearing = False
        self._gaps = 0

    @property
    def unbroken(self) -> int | None:
        """While this process hears every message published to its channels: a number that changes after
        any moment it may have missed some; None while it may be missing them now. What a process learnt
        from messages (e.g. which cached entries were forgotten elsewhere) holds while the number holds."""
        connection = self._pubsub.connection
        # A dropped connection is seen here at once; the listener notices it only after redis-py's retries.
        if not self._hearing or connection is None or not connection.is_connected:
            return None
        return self._gaps

    def _lost(self) -> None:
        self._hearing = False
        self._gaps += 1

    async def start(self) -> "RedisHub":
        # No Redis call here: the service starts (and reports not ready) while Redis is down.
        self._listener = asyncio.create_task(self._listen(), name="redis-hub-listener")
        return self

    def _channel(self, topic: str) -> str:
        return self._prefix + "ch:" + topic

    def _keys(self, topic: str) -> tuple[str, str, str]:
        return self._prefix + "seq:" + topic, self._prefix + "hist:" + topic, self._prefix + "epoch:" + topic

    async def publish(self, topic: str, event: dict[str, Any], *, sequenced: bool = True) -> int | None:
        payload = frames.encode(event)
        if sequenced:
            seq_key, hist_key, epoch_key = self._keys(topic)
            try:
                return int(await self._publish_sequenced(
                    keys=[seq_key, hist_key, self._channel(topic), epoch_key],
                    args=[payload, self._history_events, TOPIC_TTL_SECS, uuid.uuid4().hex[:12]],
                ))
            except UNAVAILABLE_ERRORS as exc:
                raise self._unavailable(exc) from None
        try:
            await self._redis.publish(self._channel(topic), b"-\n" + payload)
        except UNAVAILABLE_ERRORS as exc:
            # An ephemeral event (typing, presence, previews) is worth nothing later.
            log.warning("not published on %s while Redis does not answer (%s)", topic, exc)
        return None

    async def publish_stored(self, events: list[tuple[str, int, dict[str, Any]]]) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        for topic, run in by_topic(events).items():
            payloads = [frames.encode(event) for _seq, event in run]
            marker = ",".join(f"{seq}:{len(payload)}" for (seq, _event), payload in zip(run, payloads))
            pipeline.publish(self._channel(topic), f"@{marker}\n".encode() + b"".join(payloads))
        try:
            await pipeline.execute()
        except UNAVAILABLE_ERRORS as exc:
            # Stored: subscribers backfill them from the store once Redis is back (as `publish` says).
            log.warning("%d stored events not published while Redis does not answer (%s)", len(events), exc)

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        if self._add_local(topic, subscriber):
            channel = self._channel(topic)
            try:
                await self._pubsub.subscribe(channel)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("subscribing to %s waits for Redis (%s)", topic, exc)
                self._unsubscribed.add(channel)
                self._lost()
            self._watch_connection()
            self._has_channels.set()

    def _watch_connection(self) -> None:
        if self._pubsub.connection is not None:
            # Weakly held by redis-py; called on every (re)connect of the pub/sub connection.
            self._pubsub.connection.register_connect_callback(self._on_pubsub_connect)

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        if self._remove_local(topic, subscriber):
            if not self._subscribers:
                self._has_channels.clear()
            channel = self._channel(topic)
            self._unsubscribed.discard(channel)
            try:
                await self._pubsub.unsubscribe(channel)
            except UNAVAILABLE_ERRORS:
                pass  # the pub/sub connection is gone, and this channel is not resubscribed with it

    async def _on_pubsub_connect(self, _connection: Any) -> None:
        self._reconnected = True
        self._gaps += 1  # published while it was down: gone

    @staticmethod
    def _unavailable(exc: BaseException) -> Unavailable:
        log.warning("Redis does not answer: %s", exc)
        return Unavailable(UNAVAILABLE_MESSAGE, headers={"Retry-After": str(UNAVAILABLE_RETRY_SECS)},
                           data={"retry_after": UNAVAILABLE_RETRY_SECS})

    async def current_seq(self, topic: str) -> int:
        durable = self.durable_source(topic)
        if durable is not None:
            seq, epoch = await durable[1](topic), None
        else:
            seq, epoch = await self._seq_and_epoch(topic)
        if topic in self._subscribers:
            # From here on a reconnect backfills what this process missed of the topic, and a later
            # event of another epoch resets its subscribers (their seq counts in this one).
            self._last_seq.setdefault(topic, seq)
            if epoch is not None:
                self._epochs.setdefault(topic, epoch)
        return seq

    async def _seq_and_epoch(self, topic: str) -> tuple[int, str | None]:
        seq_key, _, epoch_key = self._keys(topic)
        try:
            seq, epoch = await self._redis.mget(seq_key, epoch_key)
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from None
        return (int(seq) if seq else 0), (epoch.decode() if epoch else None)

    async def replay(self, topic: str, since: int) -> list[tuple[int, bytes]] | Reset:
        durable = self.durable_source(topic)
        if durable is not None:
            return await durable[0](topic, since, None)
        current, epoch = await self._seq_and_epoch(topic)
        if since == current:
            return []
        entries = await self._range(topic, since + 1, None) if since < current else []
        if not entries or entries[0][0] > since + 1:
            return Reset(epoch or "", current)
        return entries

    async def _check_epochs(self) -> None:
        """After a reconnect: a watched topic whose epoch changed restarted while we were away."""
        for topic in list(self._epochs):
            _, epoch = await self._seq_and_epoch(topic)
            if epoch is not None:
                self._note_epoch(topic, epoch)

    async def _range(self, topic: str, first: int, last: int | None) -> list[tuple[int, bytes]]:
        """Sequenced events ``first..last`` of a topic, addressed and ready to send."""
        durable = self.durable_source(topic)
        if durable is not None:
            replayed = await durable[0](topic, first - 1, last)
            return [] if isinstance(replayed, Reset) else replayed
        try:
            rows = await self._redis.xrange(self._keys(topic)[1], f"{first}-0", "+" if last is None else f"{last}-0")
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from None
        result = []
        for entry_id, fields in rows:
            seq = int(entry_id.split(b"-")[0])
            result.append((seq, frames.with_topic(fields[b"d"], topic, seq)))
        return result

    async def _listen(self) -> None:
        while True:
            await self._has_channels.wait()
            try:
                if self._unsubscribed:
                    waiting = sorted(self._unsubscribed)
                    await self._pubsub.subscribe(*waiting)
                    self._unsubscribed.difference_update(waiting)
                    self._watch_connection()
                    self._reconnected = True  # what was published meanwhile is read back below
                self._hearing = not self._unsubscribed
                message = await self._pubsub.get_message(timeout=LISTEN_POLL_SECS)
                if self._reconnected:
                    self._reconnected = False
                    await self._check_epochs()
                    await self._backfill_all()
                if message is not None and message["type"] == "message":
                    await self._on_message(message["channel"].decode(), message["data"])
            except asyncio.CancelledError:
                raise
            except (*UNAVAILABLE_ERRORS, Unavailable, OSError) as exc:
                log.warning("hub lost its Redis pub/sub connection (%s); reconnecting", exc)
                self._reconnected = True
                self._lost()
                await asyncio.sleep(RECONNECT_DELAY_SECS)
            except Exception:
                log.exception("hub listener failed on a message; continuing")

    async def _on_message(self, channel: str, data: bytes) -> None:
        topic = channel[len(self._prefix) + len("ch:"):]
        marker, _, payload = data.partition(b"\n")
        if marker == b"-":
            self._fan_out(topic, None, frames.with_topic(payload, topic, None))
            return
        if marker.startswith(b"@"):  # durable events (no epoch: the database keeps them)
            await self._deliver_in_order(topic, _stored_run(topic, marker[1:], payload))
            return
        seq_text, _, epoch = marker.partition(b" ")
        seq = int(seq_text)
        await self._deliver_in_order(topic, [(seq, frames.with_topic(payload, topic, seq))], epoch.decode() or None)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._pubsub.aclose()
        self._subscribers.clear()


def _stored_run(topic: str, sizes: bytes, payload: bytes) -> list[tuple[int, bytes]]:
    """The events of a durable batch's message: "seq:size" pairs name the packed events laid end to end."""
    events, offset = [], 0
    for item in sizes.split(b","):
        seq_text, _, size_text = item.partition(b":")
        seq, size = int(seq_text), int(size_text)
        events.append((seq, frames.with_topic(payload[offset:offset + size], topic, seq)))
        offset += size
    return events
