"""The hub's interface, shared by the in-process and Redis implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from server.hub import frames


@dataclass(frozen=True)
class Reset:
    """``since`` is older than the history kept (or from another epoch): reload and continue from ``seq``."""

    epoch: str
    seq: int


class Subscriber(Protocol):
    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        """Called on the event loop with an encoded event frame; must not block."""

    # Optional, for subscribers there are many of (sockets): ``deliver_run(topic, events, joined)`` takes a
    # run of consecutive stored events at once, ``joined`` being their frames concatenated (made once for
    # every subscriber). Without it, a run is delivered event by event.

    def reset(self, topic: str, epoch: str) -> None:
        """The topic's history restarted (a new epoch: Redis lost it): seq counts from 1 again, and
        whatever the subscriber derived from earlier events may have missed some. Must not block."""


# Replays a durable topic from where the events are stored (e.g. chat from the database):
# (topic, since, upto) -> packed events with their seq, oldest first, or Reset when too many were missed.
HistorySource = Callable[[str, int, int | None], Awaitable["list[tuple[int, bytes]] | Reset"]]


class Hub(Protocol):
    async def publish(self, topic: str, event: dict[str, Any], *, sequenced: bool = True) -> int | None:
        """Send an event to every subscriber of ``topic`` in every process.

        Hub-sequenced (default): the hub assigns the next seq and keeps the event in history.
        Ephemeral (``sequenced=False``): no seq, no history (typing, presence).
        Durable events (the caller stored them and their seqs first) go through ``publish_stored``.
        """

    async def publish_stored(self, events: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Durable events (topic, seq, event) the caller stored, oldest first, published together: a batch
        of chat messages costs one call (scaled out, one round trip to Redis) instead of one per message."""

    def subscribe(self, topic: str, subscriber: Subscriber) -> Awaitable[None]: ...

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> Awaitable[None]: ...

    async def current_seq(self, topic: str) -> int: ...

    async def replay(self, topic: str, since: int) -> list[tuple[int, bytes]] | Reset:
        """Frames after ``since``, oldest first, or ``Reset`` when they are no longer all kept."""

    def register_history(self, prefix: str, source: HistorySource, current_seq: Callable[[str], Awaitable[int]]) -> None:
        """Durable topics starting with ``prefix`` replay from ``source`` instead of the hub's history."""

    def deliver_local(self, topic: str, event: dict[str, Any]) -> None:
        """To this process's subscribers of ``topic`` alone (no seq, no history, not published)."""

    def local_subscribers(self, topic: str) -> int: ...

    async def close(self) -> None: ...


class HubCore:
    """What both hubs share: local subscribers, fan-out, and the durable-topic registry."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._durable: list[tuple[str, HistorySource, Callable[[str], Awaitable[int]]]] = []
        self._last_seq: dict[str, int] = {}
        # Per watched hub-sequenced topic, the epoch of the history those seqs count in (see RedisHub).
        self._epochs: dict[str, str] = {}
        self.delivered = 0  # frames handed to subscribers, for metrics and benchmarks

    def register_history(self, prefix: str, source: HistorySource, current_seq: Callable[[str], Awaitable[int]]) -> None:
        self._durable.append((prefix, source, current_seq))

    def durable_source(self, topic: str) -> tuple[HistorySource, Callable[[str], Awaitable[int]]] | None:
        for prefix, source, current_seq in self._durable:
            if topic.startswith(prefix):
                return source, current_seq
        return None

    def _add_local(self, topic: str, subscriber: Subscriber) -> bool:
        """Adds a subscriber; True when it is the topic's first in this process."""
        subscribers = self._subscribers.setdefault(topic, set())
        subscribers.add(subscriber)
        return len(subscribers) == 1

    def _remove_local(self, topic: str, subscriber: Subscriber) -> bool:
        """Removes a subscriber; True when the topic has none left in this process."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[topic]
            self._last_seq.pop(topic, None)
            self._epochs.pop(topic, None)
            return True
        return False

    def deliver_local(self, topic: str, event: dict[str, Any]) -> None:
        """An event made in this process for this process's subscribers alone, never published: each process
        makes its own (the live feed's frames, thinned from what it already receives)."""
        self._fan_out(topic, None, frames.with_topic(frames.encode(event), topic, None))

    def local_subscribers(self, topic: str) -> int:
        """How many of this process's subscribers watch ``topic``."""
        return len(self._subscribers.get(topic, ()))

    def _fan_out(self, topic: str, seq: int | None, frame: bytes) -> None:
        # Copied because a subscriber may unsubscribe (e.g. a slow socket closing) while we iterate.
        for subscriber in tuple(self._subscribers.get(topic, ())):
            subscriber.deliver(topic, seq, frame)
        self.delivered += len(self._subscribers.get(topic, ()))

    def _fan_out_run(self, topic: str, events: list[tuple[int, bytes]]) -> None:
        """Consecutive stored events (a commit's batch) to every subscriber: a socket takes the run's joined
        frames in one call, so a batch costs one call per socket, not one per socket and event."""
        if len(events) == 1:
            self._fan_out(topic, *events[0])
            return
        joined = b"".join(frame for _seq, frame in events)
        for subscriber in tuple(self._subscribers.get(topic, ())):
            deliver_run = getattr(subscriber, "deliver_run", None)
            if deliver_run is not None:
                deliver_run(topic, events, joined)
            else:
                for seq, frame in events:
                    subscriber.deliver(topic, seq, frame)
        self.delivered += len(events) * len(self._subscribers.get(topic, ()))

    async def _range(self, topic: str, first: int, last: int | None) -> list[tuple[int, bytes]]:
        """Sequenced events ``first..last`` of a topic, addressed and ready to send."""
        raise NotImplementedError

    def _note_epoch(self, topic: str, epoch: str) -> None:
        """Remember a watched topic's epoch; a different one than known means its history restarted:
        every subscriber is told (``reset``) and delivery goes on from seq 1 of the new history."""
        if topic not in self._subscribers:
            return
        known = self._epochs.get(topic)
        self._epochs[topic] = epoch
        if known is None or known == epoch:
            return
        self._last_seq[topic] = 0
        for subscriber in tuple(self._subscribers.get(topic, ())):
            subscriber.reset(topic, epoch)

    async def _deliver_in_order(self, topic: str, events: list[tuple[int, bytes]], epoch: str | None = None) -> None:
        """Deliver sequenced events (seqs ascending), first backfilling any seq skipped since the last one.

        Durable events are published after their commit, so two senders may publish
        out of order; and Redis pub/sub may drop a message. Either way the missing
        events are already stored, so they are read back and delivered in order.
        A hub-sequenced event carries its history's ``epoch``: a new one restarts the count.
        Each unbroken stretch of seqs goes out as one run.
        """
        if epoch is not None:
            self._note_epoch(topic, epoch)
        for run in _consecutive(events):
            last = self._last_seq.get(topic)
            if last is not None:
                if run[0][0] > last + 1:
                    for missed_seq, missed in await self._range(topic, last + 1, run[0][0] - 1):
                        if missed_seq > self._last_seq.get(topic, 0):
                            self._last_seq[topic] = missed_seq
                            self._fan_out(topic, missed_seq, missed)
                run = _after(run, self._last_seq.get(topic, 0))  # what a backfill delivered is not sent again
                if not run:
                    continue
            if topic in self._subscribers:
                self._last_seq[topic] = run[-1][0]
            self._fan_out_run(topic, run)

    async def _backfill_all(self) -> None:
        """Deliver whatever every watched topic published after its last delivered seq."""
        for topic, last in list(self._last_seq.items()):
            for seq, frame in await self._range(topic, last + 1, None):
                if seq > self._last_seq.get(topic, 0):
                    self._last_seq[topic] = seq
                    self._fan_out(topic, seq, frame)


def _consecutive(events: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    """Ascending (seq, frame) pairs cut where a seq is skipped."""
    runs: list[list[tuple[int, bytes]]] = []
    for event in events:
        if runs and event[0] == runs[-1][-1][0] + 1:
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs


def _after(run: list[tuple[int, bytes]], seq: int) -> list[tuple[int, bytes]]:
    """The events of a consecutive run that come after ``seq``."""
    return run if run[0][0] > seq else run[seq - run[0][0] + 1:]


def by_topic(events: list[tuple[str, int, Any]]) -> dict[str, list[tuple[int, Any]]]:
    """(topic, seq, event) triples as each topic's (seq, event) pairs, in the order given. Events of different
    topics have no order between them (a batch of them is stored in one commit); a topic's own do."""
    topics: dict[str, list[tuple[int, Any]]] = {}
    for topic, seq, event in events:
        topics.setdefault(topic, []).append((seq, event))
    return topics
