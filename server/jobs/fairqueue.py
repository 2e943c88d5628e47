"""The in-process fair queue (MemoryJobQueue's order; RedisJobQueue's Lua follows the same rules).

The user served longest ago goes next.

One person's fifty jobs do not starve everyone else: each dispatch takes the head
job of the waiting user who was served least recently (a newcomer, never served,
comes first). A job for a model already loaded may jump ahead when that costs
fairness at most one turn: among the next two users in line, a head job whose
model is loaded is preferred.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
# How many users ahead the scheduler may look for a job whose model is already loaded.
LOADED_MODEL_LOOKAHEAD_USERS = 2
NEVER_SERVED = -1


@dataclass
class Entry(Generic[T]):
    job_id: str
    user_id: int | str  # whose turn: a user, or a narrower share of one (`QueuedJob.share`)
    model: str
    item: T


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._users: dict[int | str, deque[Entry[T]]] = {}
        self._by_id: dict[str, Entry[T]] = {}
        self._last_served: dict[int | str, int] = {}
        self._dispatches = itertools.count()
        # The user a loaded-model job went ahead of; they go next, whatever is loaded.
        self._passed_over: int | str | None = None

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._by_id

    def count_for(self, user_id: int | str) -> int:
        return len(self._users.get(user_id, ()))

    def push(self, entry: Entry[T]) -> None:
        self._users.setdefault(entry.user_id, deque()).append(entry)
        self._by_id[entry.job_id] = entry

    def push_front(self, entry: Entry[T]) -> None:
        """Put a job back at the head of the line (a worker handed it back unfinished)."""
        self._users.setdefault(entry.user_id, deque()).appendleft(entry)
        self._by_id[entry.job_id] = entry
        first = min((self._last_served.get(user, NEVER_SERVED) for user in self._users), default=NEVER_SERVED)
        self._last_served[entry.user_id] = first - 1

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._by_id.values())

    def remove(self, job_id: str) -> Entry[T] | None:
        entry = self._by_id.pop(job_id, None)
        if entry is not None:
            jobs = self._users[entry.user_id]
            jobs.remove(entry)
            if not jobs:
                del self._users[entry.user_id]
        return entry

    def _line(self) -> list[int | str]:
        """Waiting users, the one served longest ago first (ties: who queued first)."""
        return sorted(self._users, key=lambda user: self._last_served.get(user, NEVER_SERVED))

    def pop(self, is_loaded: Callable[[str], bool] = lambda _model: False) -> Entry[T] | None:
        """The next job to run."""
        if not self._users:
            return None
        candidates = self._line()[:LOADED_MODEL_LOOKAHEAD_USERS]
        user = candidates[0]
        if user != self._passed_over:
            user = next((u for u in candidates if is_loaded(self._users[u][0].model)), user)
        self._passed_over = candidates[0] if user != candidates[0] else None
        entry = self._users[user].popleft()
        if not self._users[user]:
            del self._users[user]
        del self._by_id[entry.job_id]
        self._last_served[user] = next(self._dispatches)
        return entry

    def order(self) -> Iterator[Entry[T]]:
        """Waiting jobs in the order they would run (ignoring the loaded-model preference)."""
        queues = [list(self._users[user]) for user in self._line()]
        for depth in itertools.count():
            row = [jobs[depth] for jobs in queues if depth < len(jobs)]
            if not row:
                return
            yield from row

    def places(self) -> dict[str, int]:
        """Each waiting job's place, 1 = next."""
        return {entry.job_id: place for place, entry in enumerate(self.order(), start=1)}
