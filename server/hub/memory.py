"""The in-process hub: one process, no Redis."""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from server.hub import frames
from server.hub.base import HubCore, Reset, Subscriber, by_topic

DEFAULT_HISTORY_EVENTS = 500
# Topic states (seq + history) kept for topics nobody watches, newest first; bounds memory.
MAX_IDLE_TOPICS = 10_000


@dataclass
class _Topic:
    seq: int = 0
    history: deque = field(default_factory=deque)


class MemoryHub(HubCore):
    def __init__(self, history_events: int = DEFAULT_HISTORY_EVENTS):
        super().__init__()
        # A new epoch per process: history does not survive a restart, and clients must learn that.
        self.epoch = uuid.uuid4().hex[:12]
        self._history_events = history_events
        self._topics: OrderedDict[str, _Topic] = OrderedDict()

    def _topic(self, name: str) -> _Topic:
        state = self._topics.get(name)
        if state is None:
            state = self._topics[name] = _Topic(history=deque(maxlen=self._history_events))
            self._evict_idle()
        self._topics.move_to_end(name)
        return state

    def _evict_idle(self) -> None:
        excess = len(self._topics) - MAX_IDLE_TOPICS
        for name in list(self._topics)[:max(0, excess)]:
            if name not in self._subscribers:
                del self._topics[name]

    async def publish(self, topic: str, event: dict[str, Any], *, sequenced: bool = True) -> int | None:
        payload = frames.encode(event)
        seq = None
        if sequenced:
            state = self._topic(topic)
            state.seq += 1
            seq = state.seq
            state.history.append((seq, payload))
        self._fan_out(topic, seq, frames.with_topic(payload, topic, seq))
        return seq

    async def publish_stored(self, events: list[tuple[str, int, dict[str, Any]]]) -> None:
        for topic, run in by_topic(events).items():
            await self._deliver_in_order(topic, [(seq, frames.with_topic(frames.encode(event), topic, seq))
                                                 for seq, event in run])

    async def _range(self, topic: str, first: int, last: int | None) -> list[tuple[int, bytes]]:
        durable = self.durable_source(topic)
        if durable is not None:
            replayed = await durable[0](topic, first - 1, last)
            return [] if isinstance(replayed, Reset) else replayed
        state = self._topics.get(topic)
        if state is None:
            return []
        return [(seq, frames.with_topic(payload, topic, seq)) for seq, payload in state.history
                if seq >= first and (last is None or seq <= last)]

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._add_local(topic, subscriber)

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._remove_local(topic, subscriber)

    async def current_seq(self, topic: str) -> int:
        durable = self.durable_source(topic)
        if durable is not None:
            return await durable[1](topic)
        state = self._topics.get(topic)
        return state.seq if state else 0

    async def replay(self, topic: str, since: int) -> list[tuple[int, bytes]] | Reset:
        durable = self.durable_source(topic)
        if durable is not None:
            return await durable[0](topic, since, None)
        state = self._topics.get(topic)
        current = state.seq if state else 0
        if since > current:
            return Reset(self.epoch, current)
        if since == current:
            return []
        history = state.history
        if not history or history[0][0] > since + 1:
            return Reset(self.epoch, current)
        return [(seq, frames.with_topic(payload, topic, seq)) for seq, payload in history if seq > since]

    async def close(self) -> None:
        self._subscribers.clear()
