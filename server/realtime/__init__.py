"""The one WebSocket's server side: connections, their op registry, and the writer of their events."""

from server.realtime.connection import (CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_SLOW,
                                        CLOSE_UNSUPPORTED, MAX_REF_CHARS, Connection)
from server.realtime.flusher import Flusher
from server.realtime.ops import Later, NoArgs, Op, OpCall, OpRegistry, op

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_POLICY", "CLOSE_TOO_SLOW", "CLOSE_UNSUPPORTED", "MAX_REF_CHARS", "Connection",
           "Flusher", "Later", "NoArgs", "Op", "OpCall", "OpRegistry", "op"]
