"""The Redis hub: pub/sub fans events out across processes, a capped Stream per topic keeps history.

Redis pub/sub is at-most-once: a message published while a process's pub/sub
connection is down is gone. So every sequenced event is also in a Stream (or,
for durable topics, in the database), each process remembers the last seq it
delivered per topic, and a jump in seq — or a reconnect — makes it backfill the
missing events from there before delivering the new one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.hub import frames
from server.hub.base import HubCore, Reset, Subscriber

log = logging.getLogger(__name__)

DEFAULT_HISTORY_EVENTS = 500
# A topic nobody publishes to for this long loses its seq and history (bounded Redis memory).
TOPIC_TTL_SECS = 7 * 24 * 3600
RECONNECT_DELAY_SECS = 0.5
LISTEN_POLL_SECS = 1.0

# INCR the seq, append to the capped stream with the seq as its id, publish "seq\n" + payload.
# One script, so the seq order is the stream order is the publish order.
PUBLISH_SEQUENCED = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. '\\n' .. ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


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
        self._listener: asyncio.Task | None = None
        self.epoch = ""

    async def start(self) -> "RedisHub":
        # No Redis call here: the service starts (and reports not ready) while Redis is down.
        self._listener = asyncio.create_task(self._listen(), name="redis-hub-listener")
        return self

    def _channel(self, topic: str) -> str:
        return self._prefix + "ch:" + topic

    def _keys(self, topic: str) -> tuple[str, str]:
        return self._prefix + "seq:" + topic, self._prefix + "hist:" + topic

    async def publish(self, topic: str, event: dict[str, Any], *, seq: int | None = None,
                      sequenced: bool = True) -> int | None:
        payload = frames.encode(event)
        if seq is None and sequenced:
            seq_key, hist_key = self._keys(topic)
            return int(await self._publish_sequenced(
                keys=[seq_key, hist_key, self._channel(topic)],
                args=[payload, self._history_events, TOPIC_TTL_SECS],
            ))
        marker = b"-" if seq is None else str(seq).encode()
        await self._redis.publish(self._channel(topic), marker + b"\n" + payload)
        return seq

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        if self._add_local(topic, subscriber):
            await self._pubsub.subscribe(self._channel(topic))
            if self._pubsub.connection is not None:
                # Weakly held by redis-py; called on every (re)connect of the pub/sub connection.
                self._pubsub.connection.register_connect_callback(self._on_pubsub_connect)
            self._has_channels.set()

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        if self._remove_local(topic, subscriber):
            if not self._subscribers:
                self._has_channels.clear()
            await self._pubsub.unsubscribe(self._channel(topic))

    async def _on_pubsub_connect(self, _connection: Any) -> None:
        self._reconnected = True

    async def current_seq(self, topic: str) -> int:
        durable = self.durable_source(topic)
        if durable is not None:
            return await durable[1](topic)
        value = await self._redis.get(self._keys(topic)[0])
        return int(value) if value else 0

    async def replay(self, topic: str, since: int) -> list[tuple[int, bytes]] | Reset:
        durable = self.durable_source(topic)
        if durable is not None:
            return await durable[0](topic, since, None)
        current = await self.current_seq(topic)
        if since == current:
            return []
        entries = await self._range(topic, since + 1, None) if since < current else []
        if not entries or entries[0][0] > since + 1:
            return Reset(await self._epoch(), current)
        return entries

    async def _epoch(self) -> str:
        """Changes when Redis loses its data (it keeps nothing on disk here), so clients know to reload."""
        if not self.epoch:
            key = self._prefix + "epoch"
            await self._redis.set(key, uuid.uuid4().hex[:12], nx=True)
            self.epoch = (await self._redis.get(key) or b"").decode()
        return self.epoch

    async def _range(self, topic: str, first: int, last: int | None) -> list[tuple[int, bytes]]:
        """Sequenced events ``first..last`` of a topic, addressed and ready to send."""
        durable = self.durable_source(topic)
        if durable is not None:
            replayed = await durable[0](topic, first - 1, last)
            return [] if isinstance(replayed, Reset) else replayed
        rows = await self._redis.xrange(self._keys(topic)[1], f"{first}-0", "+" if last is None else f"{last}-0")
        result = []
        for entry_id, fields in rows:
            seq = int(entry_id.split(b"-")[0])
            result.append((seq, frames.with_topic(fields[b"d"], topic, seq)))
        return result

    async def _listen(self) -> None:
        while True:
            await self._has_channels.wait()
            try:
                message = await self._pubsub.get_message(timeout=LISTEN_POLL_SECS)
                if self._reconnected:
                    self._reconnected = False
                    await self._backfill_all()
                if message is not None and message["type"] == "message":
                    await self._on_message(message["channel"].decode(), message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("hub lost its Redis pub/sub connection (%s); reconnecting", exc)
                self._reconnected = True
                await asyncio.sleep(RECONNECT_DELAY_SECS)
            except Exception:
                log.exception("hub listener failed on a message; continuing")

    async def _on_message(self, channel: str, data: bytes) -> None:
        topic = channel[len(self._prefix) + len("ch:"):]
        marker, _, payload = data.partition(b"\n")
        if marker == b"-":
            self._fan_out(topic, None, frames.with_topic(payload, topic, None))
            return
        await self._deliver_in_order(topic, int(marker), frames.with_topic(payload, topic, int(marker)))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._pubsub.aclose()
        self._subscribers.clear()
