"""A thin API client over httpx that behaves like the browser app: cookies and the XSRF header."""

from __future__ import annotations

from typing import Any

import httpx

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ApiClient:
    def __init__(self, base_url: str, *, token: str | None = None):
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, follow_redirects=False)

    async def request(self, method: str, path: str, *, xsrf: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if xsrf and method.upper() not in SAFE_METHODS:
            if "_xsrf" not in self.http.cookies:
                await self.http.get("/api/me")  # hands out the `_xsrf` cookie
            headers.setdefault("X-XSRFToken", self.http.cookies["_xsrf"])
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **kwargs)

    async def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, json=json, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def register(self, username: str, password: str = "correct horse battery", **extra: Any) -> dict:
        response = await self.post("/api/auth/register", {"username": username, "password": password, **extra})
        assert response.status_code == 201, response.text
        return response.json()["user"]

    async def login(self, username: str, password: str = "correct horse battery") -> httpx.Response:
        return await self.post("/api/auth/login", {"username": username, "password": password})

    async def aclose(self) -> None:
        await self.http.aclose()


def error_code(response: httpx.Response) -> str:
    """The `code` of an error response; fails loudly if the body is not the error shape."""
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]) <= {"code", "message", "data"}, body
    return body["error"]["code"]
