"""The Redis client every part shares, built to ride out a Redis restart.

Pooled connections go stale when Redis restarts; without retries the first command on each
failed once more after Redis was back. Here a command that fails on a connection error is
retried on a fresh connection with jittered exponential backoff, idle connections are checked
before use, and no call waits long on a Redis that is gone: the parts that use Redis decide
for themselves what to do while it does not answer (docs/ARCHITECTURE.md, "Without Redis").
"""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Three more tries, 10 ms to 250 ms apart: a restart's stale connections are replaced at once, and a
# Redis that is down costs a call about half a second before the caller falls back.
RETRIES = 3
BACKOFF_BASE_SECS = 0.010
BACKOFF_CAP_SECS = 0.250
CONNECT_TIMEOUT_SECS = 1.0
# Longer than the hub's pub/sub poll (1 s), shorter than a request is worth waiting.
SOCKET_TIMEOUT_SECS = 5.0
# A connection idle this long is PINGed before use, so a dead one is replaced before a command is lost on it.
HEALTH_CHECK_SECS = 10

UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError)


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (nothing is connected until the first command)."""
    return redis.from_url(
        url,
        retry=Retry(ExponentialWithJitterBackoff(cap=BACKOFF_CAP_SECS, base=BACKOFF_BASE_SECS), RETRIES,
                    supported_errors=UNAVAILABLE_ERRORS),
        retry_on_error=list(UNAVAILABLE_ERRORS),
        socket_connect_timeout=CONNECT_TIMEOUT_SECS,
        socket_timeout=SOCKET_TIMEOUT_SECS,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECS,
    )
