"""Scaled out, each web process answers authenticated requests from its own copies of the principal cache:
a forget made in another process must reach them at once, and a lost pub/sub connection voids them."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from server.hub import RedisHub
from server.principal_mirror import PrincipalMirror
from server.redis_client import connect
from tests.conftest import make_settings
from tests.support.backends import backend as open_backend, require_services
from tests.support.client import ApiClient, error_code
from tests.support.redis_server import own_redis
from tests.support.server import running_server

pytestmark = pytest.mark.services


async def test_a_change_in_one_process_reaches_the_others_copies_at_once(tmp_path):
    with open_backend("services") as backend:
        settings = make_settings(backend, tmp_path / "data", inference_enabled=False)
        async with running_server(settings) as (web1, _), running_server(settings) as (web2, _):
            alice = ApiClient(web1)
            scripts: list[ApiClient] = []
            try:
                await alice.register("alice")
                for round_ in range(10):
                    created = (await alice.post("/api/tokens", {"name": f"script {round_}"})).json()
                    script = ApiClient(web2, token=created["token"])
                    scripts.append(script)
                    for _ in range(3):  # read from the shared cache once, then from web2's copy
                        assert (await script.get("/api/me")).status_code == 200
                    # A profile edit on web1 shows on web2's next answer...
                    name = f"Alice {round_}"
                    assert (await alice.patch("/api/me", {"display_name": name})).status_code == 200
                    assert (await script.get("/api/me")).json()["user"]["display_name"] == name
                    # ...and a revoked token is refused there at once.
                    assert (await alice.delete(f"/api/tokens/{created['api_token']['id']}")).status_code == 204
                    refused = await script.get("/api/me")
                    assert refused.status_code == 401 and error_code(refused) == "invalid_token", refused.text
            finally:
                await alice.aclose()
                for script in scripts:
                    await script.aclose()


@pytest.fixture
def redis_server(tmp_path):
    require_services()
    with own_redis(tmp_path / "redis") as server:
        yield server


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_copies_are_void_after_a_forget_or_a_lost_connection(redis_server):
    client = connect(redis_server.url)
    hub = await RedisHub(client, f"va:mirror:{uuid.uuid4().hex[:8]}:").start()
    mirror, other = PrincipalMirror(hub), PrincipalMirror(hub)
    shared = {"k": b"entry"}  # the shared cache, as the mirror reads it

    async def read_shared(key: str) -> bytes | None:
        return shared.get(key)

    async def copied(key: str) -> bytes | None:
        """What the mirror answers without asking the shared cache."""
        async def unreachable(_key: str) -> None:
            return None
        return await mirror.get(key, unreachable)

    try:
        await mirror.start()
        await other.start()
        await wait_until(lambda: hub.unbroken is not None)
        assert await mirror.get("k", read_shared) == b"entry"
        assert await copied("k") == b"entry"

        # A forget heard while the shared cache was being read: the value read may be the forgotten one.
        async def read_during_a_forget(key: str) -> bytes | None:
            stale = shared.pop(key)
            await other.forget([key])
            await asyncio.sleep(0.2)  # heard from the hub meanwhile
            return stale

        shared["j"] = b"entry"
        assert await mirror.get("j", read_during_a_forget) == b"entry"
        assert await copied("j") is None

        await other.forget(["k"])
        await wait_until(lambda: not mirror._copies)  # heard from the hub
        assert await copied("k") is None

        assert await mirror.get("k", read_shared) == b"entry"
        shared["m"] = b"entry"
        assert await mirror.get("m", read_shared) == b"entry"
        redis_server.stop()
        # Forgets published meanwhile are lost: no copy is used until the connection is back...
        await wait_until(lambda: hub.unbroken is None)
        assert await copied("k") is None
        await mirror.get("k", read_shared)
        assert await copied("k") is None  # nor made
        redis_server.start()
        await wait_until(lambda: hub.unbroken is not None, timeout=20)
        # ...and none made before it is used after.
        assert await copied("m") is None
        shared["k"] = b"fresh"
        assert await mirror.get("k", read_shared) == b"fresh"
        assert await copied("k") == b"fresh"
    finally:
        await hub.close()
        await client.aclose()
