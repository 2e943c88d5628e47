"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.base import APIHandler, BaseHandler


class HealthHandler(APIHandler):
    async def get(self) -> None:
        """The process is alive and its loop answers."""
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    async def get(self) -> None:
        """The database (and Redis, when configured) answer."""
        checks = await self.runtime.readiness()
        ready = all(value == "ok" for value in checks.values())
        self.write_json({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        """Prometheus text exposition."""
        await self.runtime.queue_metrics.refresh()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.runtime.registry))


default_handlers = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
]
