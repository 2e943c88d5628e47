"""The fair queue in front of the engine: round-robin across users.

One person's fifty jobs do not starve everyone else: each dispatch takes the
head job of the next user in rotation. A job for a model already loaded may go
first when that costs fairness at most one turn: among the next two users in
rotation, a head job whose model is loaded is preferred.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
# How many users ahead the scheduler may look for a job whose model is already loaded.
LOADED_MODEL_LOOKAHEAD_USERS = 2


@dataclass
class Entry(Generic[T]):
    job_id: str
    user_id: int
    model: str
    item: T


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        # Users with waiting jobs, in rotation order; the first is next.
        self._users: OrderedDict[int, deque[Entry[T]]] = OrderedDict()
        self._by_id: dict[str, Entry[T]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._by_id

    def count_for(self, user_id: int) -> int:
        return len(self._users.get(user_id, ()))

    def push(self, entry: Entry[T]) -> None:
        self._users.setdefault(entry.user_id, deque()).append(entry)
        self._by_id[entry.job_id] = entry

    def remove(self, job_id: str) -> Entry[T] | None:
        entry = self._by_id.pop(job_id, None)
        if entry is not None:
            jobs = self._users[entry.user_id]
            jobs.remove(entry)
            if not jobs:
                del self._users[entry.user_id]
        return entry

    def pop(self, is_loaded: Callable[[str], bool] = lambda _model: False) -> Entry[T] | None:
        """The next job to run, rotating its user to the back."""
        if not self._users:
            return None
        candidates = list(self._users)[:LOADED_MODEL_LOOKAHEAD_USERS]
        chosen_user = next((u for u in candidates if is_loaded(self._users[u][0].model)), candidates[0])
        jobs = self._users[chosen_user]
        entry = jobs.popleft()
        del self._by_id[entry.job_id]
        del self._users[chosen_user]
        if jobs:
            self._users[chosen_user] = jobs  # to the back of the rotation
        return entry

    def order(self) -> Iterator[Entry[T]]:
        """Waiting jobs in the order they would run (ignoring the loaded-model preference)."""
        queues = [list(jobs) for jobs in self._users.values()]
        depth = 0
        while True:
            row = [jobs[depth] for jobs in queues if depth < len(jobs)]
            if not row:
                return
            yield from row
            depth += 1

    def places(self) -> dict[str, int]:
        """Each waiting job's place, 1 = next."""
        return {entry.job_id: place for place, entry in enumerate(self.order(), start=1)}
