"""The job queue's interface: admission, a fair pick, leases, cancel signals and the worker registry.

Two implementations behind it: `MemoryJobQueue` (one process, the embedded default)
and `RedisJobQueue` (Redis Streams consumer group shared by every web process and
worker). The database row stays the truth of a job; the queue only orders and
delivers, so whatever the queue loses is put back from the database
(`JobRecords.orphans` and `lost_state`).

Policy (both implementations, see docs/ARCHITECTURE.md "The job queue"):
- fair across users: the next job is the head job of the waiting user served
  longest ago (a user never served comes first, then by arrival);
- model affinity second: a worker may take the head job of the second user in
  line when its model is loaded there and the first user was not passed over
  already, so fairness costs at most one turn;
- caps: waiting jobs in all and per user, checked and counted atomically.

"User" above is a job's share (`QueuedJob.share`): its owner, or a narrower lane of
the owner's jobs with its own cap (`Lane`: one Discord user of the bot account).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from server.errors import AppError, Unavailable

# How many users ahead a worker may look for a job whose model it has loaded.
AFFINITY_LOOKAHEAD_USERS = 2
LANE_MAX_CHARS = 40  # jobs.queue_lane


class QueueFull(AppError):
    code = "queue_full"
    status = 429


class QueueUnavailable(Unavailable):
    """The queue's store (Redis) does not answer: nothing was queued."""

    code = "queue_unavailable"


@dataclass(frozen=True)
class QueuedJob:
    """What the queue knows of a waiting job (the rest is in its row)."""

    job_id: str
    user_id: int
    model: str
    kind: str
    enqueued_at: float  # wall-clock seconds, for the oldest-waiting figure
    lane: str | None = None  # a line narrower than its owner's (`Lane`); None: the owner's own

    @property
    def share(self) -> str:
        """Whose turn and whose cap the job counts toward: its lane, else its owner."""
        return self.lane or str(self.user_id)

    def encode(self) -> str:
        text = f"{self.job_id}|{self.model}|{self.kind}|{self.enqueued_at:.3f}|{self.user_id}"
        return f"{text}|{self.lane}" if self.lane else text  # five fields without one, as before lanes

    @classmethod
    def decode(cls, text: str) -> "QueuedJob":
        """Raises ValueError for anything that is not an encoded job."""
        fields = text.split("|")
        if len(fields) not in (5, 6) or not fields[0] or len(fields[0]) > 32:
            raise ValueError(f"bad queue entry {text[:80]!r}")
        job_id, model, kind, enqueued_at, user_id = fields[:5]
        return cls(job_id, int(user_id), model, kind, float(enqueued_at), fields[5] if len(fields) == 6 else None)


@dataclass(frozen=True)
class Lane:
    """A line narrower than its owner's, with its own cap: each Discord user running as the one bot account
    takes turns and is capped as if they were a user of their own (`server.discord`)."""

    name: str  # no `|` or `:` (the queue's encodings); at most LANE_MAX_CHARS
    max_waiting: int


@dataclass(frozen=True)
class Lease:
    """A job a worker took: it is the worker's until it acks, hands it back or stops heartbeating."""

    job: QueuedJob
    token: str  # the stream entry id (Redis); the job id in-process


@dataclass
class WorkerInfo:
    """What a worker announces about itself with every heartbeat."""

    id: str
    host: str
    pid: int
    devices: list[str]
    slots: int
    started_at: float
    models: list[str] = field(default_factory=list)  # loaded now
    running: list[str] = field(default_factory=list)  # job ids
    heartbeat_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class QueueStats:
    waiting: int
    waiting_by_model: dict[str, int]
    oldest_waiting_at: float | None  # wall-clock seconds of the oldest waiting job
    running: int
    redeliveries: int
    dead_letters: int


@dataclass(frozen=True)
class LatestPreview:
    """A running job's newest preview frame (previews are not in the topic's history: they are large)."""

    step: int
    total: int
    mime: str
    image: bytes

    def event(self, job_id: str) -> dict[str, Any]:
        """As the `gen.preview` event a watcher would have seen."""
        return {"type": "gen.preview", "job": job_id, "step": self.step, "total": self.total, "mime": self.mime,
                "image": self.image}


@dataclass(frozen=True)
class JobLive:
    """What the queue knows of a job now, beside its row: its place while it waits, (step, total) while
    it runs (as its worker last reported), and its newest preview when asked for."""

    place: int | None = None
    progress: tuple[int, int] | None = None
    preview: LatestPreview | None = None


PlacePublisher = Callable[[str, int], Awaitable[None]]
CancelListener = Callable[[str, bool], None]  # (job id, keep what was made)


class JobQueue(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    # Web side

    async def admit(self, job: QueuedJob, *, max_global: int, max_per_user: int) -> None:
        """Queue a job, or raise QueueFull (nothing queued) / QueueUnavailable."""

    async def remove(self, job_id: str) -> bool:
        """Take a waiting job out (cancel); False when it is not waiting (running, gone)."""

    async def request_cancel(self, job_id: str, keep: bool = False) -> None:
        """Tell whichever worker runs (or is about to run) the job to stop it (`keep`: and keep what it made)."""

    async def announce_places(self, publish: PlacePublisher) -> None:
        """Publish the place of every waiting job whose place changed since the last announcement."""

    async def place(self, job_id: str) -> int | None: ...

    async def live(self, job_id: str, *, preview: bool = False) -> JobLive:
        """The job's place, progress and (``preview``) newest preview, read together: one round trip for
        a client that polls (A1111's `progress`)."""

    async def stats(self) -> QueueStats: ...

    async def workers(self) -> list[WorkerInfo]:
        """Workers that heartbeat, newest first."""

    # Worker side

    async def take(self, worker_id: str, loaded_models: set[str]) -> Lease | None:
        """The next job by the fairness policy, leased to this worker; None when nothing waits."""

    async def reclaim(self, worker_id: str, idle_secs: float) -> Lease | None:
        """A job whose worker stopped heartbeating for `idle_secs`, leased to this worker now."""

    async def ack(self, lease: Lease, worker_id: str) -> bool:
        """The outcome is committed: forget the job. False when the lease was no longer this worker's."""

    async def hand_back(self, lease: Lease, worker_id: str) -> None:
        """Put a job this worker will not finish back at the head of the line."""

    async def adopt(self, job: QueuedJob, worker_id: str) -> Lease | None:
        """A lease for a job this worker runs but the queue no longer knows (its store was reset)."""

    async def heartbeat(self, worker: WorkerInfo, leases: list[Lease]) -> list[str]:
        """Announce the worker and renew its leases; returns the job ids whose lease it lost."""

    async def leave(self, worker_id: str) -> None:
        """The worker stops: remove it from the registry."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job may be waiting, or after `timeout` seconds."""

    def on_cancel(self, listener: CancelListener) -> None:
        """Call `listener(job_id, keep)` on the loop when a cancel is requested anywhere."""

    async def cancel_requested(self, job_id: str) -> bool: ...

    async def set_progress(self, job_id: str, step: int, total: int) -> None: ...

    async def set_preview(self, job_id: str, preview: "LatestPreview") -> None:
        """Keep a running job's newest preview frame, for whoever starts watching late."""

    async def preview(self, job_id: str) -> "LatestPreview | None":
        """The newest preview frame of a running job, if one was kept."""

    async def readmit(self, jobs: list[QueuedJob]) -> int:
        """Put jobs back from the database (no caps, jobs already known are skipped); how many were added."""

    async def lost_state(self) -> bool:
        """True once per loss of the queue's state (a Redis restarted empty, a fresh process): the caller
        puts waiting jobs back from the database. Only one caller across processes gets True."""

    async def known(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs the queue holds (waiting or leased)."""

    async def alive_workers(self) -> set[str]: ...

    async def try_lock(self, name: str, ttl_secs: float) -> bool:
        """A short cluster-wide lock for periodic chores (one process at a time)."""
