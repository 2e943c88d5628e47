import httpx
import pytest
from sqlalchemy import text

from config import Settings

from tests.conftest import make_settings
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server


async def test_health_ready_and_metrics(api, backend):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    expected = {"database", "redis"} if backend.services else {"database"}
    assert set(ready.json()["checks"]) == expected
    await api.get("/api/me")
    metrics = await api.get("/metrics")
    assert metrics.status_code == 200
    assert 'va_http_requests_total{method="GET",route="MeHandler",status="401"}' in metrics.text
    assert "va_http_request_duration_seconds_bucket" in metrics.text



async def test_readiness_reports_an_unreachable_redis(embedded_backend, tmp_path):

    # Port 9 (discard) has no Redis behind it on these machines.
    settings = make_settings(embedded_backend, tmp_path / "data", redis_url="redis://127.0.0.1:9/0")
    async with running_server(settings) as (base_url, _runtime):
        client = ApiClient(base_url)
        ready = await client.get("/readyz")
        await client.aclose()
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["redis"].startswith("error")


async def test_a_server_fault_leaks_no_trace(embedded_backend, tmp_path):

    async with running_server(make_settings(embedded_backend, tmp_path / "data")) as (base_url, runtime):
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DROP TABLE users"))
        client = ApiClient(base_url)
        response = await client.get("/api/users/someone")
        await client.aclose()
    assert response.status_code == 500 and error_code(response) == "internal_error"
    assert "Traceback" not in response.text and "users" not in response.text


async def scrape(base_url: str, *, source: str = "127.0.0.1", **headers: str) -> httpx.Response:
    """GET /metrics from a chosen loopback address (Linux routes all of 127.0.0.0/8 to lo)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
        return await client.get("/metrics", headers=headers)


async def test_metrics_answer_the_allowed_networks_only_and_not_through_a_proxy(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", metrics_allowed_networks=["127.0.0.1/32"])
    async with running_server(settings) as (base_url, _runtime):
        inside = await scrape(base_url)
        outside = await scrape(base_url, source="127.0.0.2")
        proxied = await scrape(base_url, **{"X-Forwarded-For": "203.0.113.9"})
        forwarded = await scrape(base_url, Forwarded="for=203.0.113.9")
    assert inside.status_code == 200 and "va_http_requests_total" in inside.text
    for refused in (outside, proxied, forwarded):
        assert refused.status_code == 403 and error_code(refused) == "forbidden", refused.text
        assert "va_http" not in refused.text


async def test_metrics_by_token(embedded_backend, tmp_path):
    token = "metrics-secret-0123456789"
    settings = make_settings(embedded_backend, tmp_path / "data", metrics_allowed_networks=[], metrics_token=token)
    async with running_server(settings) as (base_url, _runtime):
        none = await scrape(base_url)
        wrong = await scrape(base_url, Authorization="Bearer metrics-secret-wrong-000000")
        right = await scrape(base_url, source="127.0.0.2", Authorization=f"Bearer {token}")
        proxied = await scrape(base_url, Authorization=f"Bearer {token}", **{"X-Forwarded-For": "203.0.113.9"})
    assert none.status_code == 401 and error_code(none) == "unauthenticated"
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_token"
    assert right.status_code == 200 and "va_http_requests_total" in right.text
    assert proxied.status_code == 200  # a token is good from anywhere (a hosted Prometheus)


def test_metrics_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        Settings(metrics_token="short")
    with pytest.raises(ValueError):
        Settings(metrics_allowed_networks=["not a network"])
    assert [str(net) for net in Settings().metrics_allowed_networks] == [
        "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
