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

