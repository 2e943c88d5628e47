"""Security headers on every answer: pages, assets, API, errors, 404s, the socket's refusals, downloads."""

from __future__ import annotations

import httpx
import pytest

from config import Settings
from tests.support.client import ApiClient
from tests.support.safetensors_files import tiny_lora
from tests.support.server import running_server


def assert_secured(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("script-src") == ["'self'"], where  # no inline script, no eval, no other host
    assert directives.get("default-src") == ["'self'"] and directives.get("object-src") == ["'none'"], where
    assert "'unsafe-inline'" not in directives.get("script-src", []), where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    assert response.headers.get("X-Frame-Options") == "DENY", where
    assert response.headers.get("Referrer-Policy") == "same-origin", where


async def test_every_kind_of_answer_carries_the_headers(settings: Settings) -> None:
    if not (settings.frontend_dist / "index.html").exists():
        pytest.fail("frontend/dist is not built: run `make test` (it runs `npm run build`)")
    asset = next(path.name for path in (settings.frontend_dist / "assets").iterdir() if path.suffix == ".js")
    async with running_server(settings) as (base_url, _runtime):
        api = ApiClient(base_url)
        await api.register("alice")
        created = await api.post("/api/hub/models", {"name": "Tiny", "description": "hi"})
        version = created.json()["model"]["versions"][0]["id"]
        uploaded = await api.put(f"/api/hub/versions/{version}/files/tiny.safetensors", content=tiny_lora())
        download = uploaded.json()["file"]["download_url"]
        anonymous = ApiClient(base_url)
        answers = [
            await anonymous.get("/"),  # index.html
            await anonymous.get("/generate"),  # a client route, index.html too
            await anonymous.get(f"/assets/{asset}"),
            await anonymous.get("/favicon.svg"),
            await anonymous.get("/api/me"),  # 401
            await anonymous.get("/api/no/such/route"),  # 404
            await anonymous.post("/api/auth/login", {"username": "a", "password": "b"}, xsrf=False),  # 403 xsrf
            await anonymous.get("/healthz"),
            await anonymous.get("/metrics"),
            await anonymous.get("/ws"),  # not an upgrade: 400
            await anonymous.get("/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x" * 24,
                                                "Origin": "https://evil.example"}),  # 403 origin
            await anonymous.get("/ws?token=va_wrong", headers={"Upgrade": "websocket", "Connection": "Upgrade"}),
            await api.get(download),
            await api.request("HEAD", download),
            await api.get(download, headers={"Range": "bytes=999999999-"}),  # 416
            await api.get("/api/hub/models/999999"),  # 404
            await anonymous.request("TRACE", "/api/me"),  # 405
        ]
        await api.aclose()
        await anonymous.aclose()
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 200, 200, 401, 404, 403, 200, 200, 400, 403, 401, 200, 200, 416, 404, 405]
    for answer in answers:
        assert_secured(answer)
