"""Prometheus export of the job queue and the workers, from a snapshot taken just before a scrape.

The queue's figures live in Redis (or this process), and a collector's `collect()`
cannot await: the /metrics handler awaits `refresh()` first, then the registry renders
the snapshot.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError

from server.jobs.queue import JobQueue, QueueStats, WorkerInfo

log = logging.getLogger(__name__)

PREFIX = "va_queue"


class QueueCollector(Collector):
    def __init__(self, queue: JobQueue, registry: CollectorRegistry) -> None:
        self._queue = queue
        self._stats: QueueStats | None = None
        self._workers: list[WorkerInfo] = []
        registry.register(self)

    async def refresh(self) -> None:
        try:
            self._stats = await self._queue.stats()
            self._workers = await self._queue.workers()
        except (RedisError, OSError) as exc:  # the scrape still answers, with the figures it had
            log.warning("queue metrics not refreshed: %s", exc)

    def collect(self) -> Iterator[Any]:
        stats = self._stats
        if stats is None:
            return
        waiting = GaugeMetricFamily(f"{PREFIX}_waiting_jobs", "Jobs waiting for a worker, by model", labels=["model"])
        for model, count in sorted(stats.waiting_by_model.items()):
            waiting.add_metric([model], count)
        yield waiting
        age = time.time() - stats.oldest_waiting_at if stats.oldest_waiting_at is not None else 0.0
        yield GaugeMetricFamily(f"{PREFIX}_oldest_waiting_seconds", "Age of the oldest waiting job", value=age)
        yield GaugeMetricFamily(f"{PREFIX}_running_jobs", "Jobs leased to a worker", value=stats.running)
        yield CounterMetricFamily(f"{PREFIX}_redeliveries", "Jobs taken over from a worker that stopped heartbeating",
                                  value=stats.redeliveries)
        yield CounterMetricFamily(f"{PREFIX}_dead_letters", "Entries sent to the dead letters", value=stats.dead_letters)
        yield GaugeMetricFamily("va_workers", "Workers that heartbeat", value=len(self._workers))
        running = GaugeMetricFamily("va_worker_running_jobs", "Jobs a worker runs now", labels=["worker"])
        for worker in self._workers:
            running.add_metric([worker.id], len(worker.running))
        yield running
