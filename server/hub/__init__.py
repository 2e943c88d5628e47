"""The hub: topics, their sequence numbers and history, and fan-out to subscribers.

Two implementations behind one interface: ``MemoryHub`` (one process) and
``RedisHub`` (pub/sub across processes, a capped Stream per topic for history).
"""

from server.hub.base import Hub, HistorySource, Reset, Subscriber
from server.hub.memory import MemoryHub
from server.hub.redis import RedisHub

__all__ = ["Hub", "HistorySource", "MemoryHub", "RedisHub", "Reset", "Subscriber"]
