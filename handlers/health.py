"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
from ipaddress import ip_address

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.base import APIHandler
from server.errors import Forbidden, Unauthenticated

# A proxy in front of us adds one of these: the peer is then the proxy, not whoever asked.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


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


class MetricsHandler(APIHandler):
    async def prepare(self) -> None:
        """Only the allowed networks (not through a proxy) or the metrics token may read metrics."""
        settings = self.runtime.settings
        token = self.bearer_token()
        if settings.metrics_token is not None and token is not None:
            if not hmac.compare_digest(token.encode(), settings.metrics_token.encode()):
                raise Unauthenticated("The metrics token is wrong.", code="invalid_token")
            return
        peer = ip_address(self.request.remote_ip or "0.0.0.0")
        peer = getattr(peer, "ipv4_mapped", None) or peer  # ::ffff:10.0.0.5 on a dual-stack socket
        proxied = any(name in self.request.headers for name in PROXY_HEADERS)
        if not proxied and any(peer in network for network in settings.metrics_allowed_networks):
            return
        if settings.metrics_token is not None:
            raise Unauthenticated("Send the metrics token as `Authorization: Bearer <token>`.",
                                  headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        raise Forbidden("Metrics are readable from the configured networks only (`metrics_allowed_networks`).")

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
