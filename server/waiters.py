"""Settling the futures that callers of a batched operation wait on (a commit's senders, a turn's counters)."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(waiter: asyncio.Future, result: Any = None, *, failure: BaseException | None = None) -> None:
    """Give a waiter its result (or ``failure``), unless it is done already: cancelled by a caller that went
    away, which must not stop the batch's other waiters from being answered."""
    if waiter.done():
        return
    if failure is not None:
        waiter.set_exception(failure)
    else:
        waiter.set_result(result)
