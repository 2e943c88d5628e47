from sqlalchemy import text

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
