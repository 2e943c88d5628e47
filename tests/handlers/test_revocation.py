"""Revocations and role changes reach cached principals and open sockets at once, in every process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from config import Settings
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server
from tests.conftest import make_settings
from tests.support.ws import WsClient

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


async def run_cli(settings: Settings, *args: str) -> None:
    """`run.py <args>` in another process, on the same database (and Redis), as an operator would."""
    env = {**os.environ, "VA_DATA_DIR": str(settings.data_dir), "VA_REDIS_PREFIX": settings.redis_prefix}
    for name, value in (("VA_DATABASE_URL", settings.database_url), ("VA_REDIS_URL", settings.redis_url)):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    process = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "run.py"), *args, env=env, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")


async def test_role_changes_from_another_process_apply_at_once(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data")
    async with running_server(settings) as (base_url, _):
        mod, author = ApiClient(base_url), ApiClient(base_url)
        sockets: list[WsClient] = []
        try:
            await mod.register("molly")
            await author.register("arthur")
            # Cached as an ordinary user first, then promoted by another process: at once a moderator.
            assert (await mod.get("/api/moderation/reports")).status_code == 403
            await run_cli(settings, "moderator", "molly")
            assert (await mod.get("/api/moderation/reports")).status_code == 200

            posted = await WsClient.connect(base_url, api=author)
            sockets.append(posted)
            await posted.request("sub", topic="room:lobby")
            message = (await posted.request("chat.send", room="lobby", text="delete me"))["message"]
            watcher = await WsClient.connect(base_url, api=mod)
            sockets.append(watcher)
            await watcher.request("sub", topic="room:lobby")

            # Demoted by another process: the next request and the open socket no longer have the right.
            await run_cli(settings, "moderator", "molly", "--revoke")
            refused = await mod.get("/api/moderation/reports")
            assert refused.status_code == 403 and error_code(refused) == "forbidden"
            # The socket is closed (4001) as soon as it hears of the change; a frame that gets in first is refused.
            if watcher.conn.close_code is None:
                await watcher.send("chat.delete", ref="late", room="lobby", message=message["id"])
            assert await watcher.closed(timeout=3) == 4001
            assert [e for e in watcher.events if e.get("ref") == "late" and e["type"] != "error"] == []
            # Reconnected, the socket is what the user now is.
            again = await WsClient.connect(base_url, api=mod)
            sockets.append(again)
            await again.request("sub", topic="room:lobby")
            refused_frame = await again.request("chat.delete", room="lobby", message=message["id"])
            assert refused_frame["type"] == "error" and refused_frame["code"] == "forbidden"
        finally:
            for socket in sockets:
                socket.close()
            await mod.aclose()
            await author.aclose()


async def test_revoking_a_token_closes_sockets_opened_with_it(api, server):
    await api.register("tess")
    created = (await api.post("/api/tokens", {"name": "bot"})).json()
    by_query = await WsClient.connect(server, token=created["token"])
    await by_query.request("sub", topic="room:lobby")
    assert (await api.delete(f"/api/tokens/{created['api_token']['id']}")).status_code == 204
    assert await by_query.closed(timeout=3) == 4001


async def test_password_change_may_revoke_tokens(api, new_client):
    await api.register("uma")
    kept = (await api.post("/api/tokens", {"name": "kept"})).json()["token"]
    changed = await api.post("/api/me/password", {"current_password": PASSWORD, "new_password": "second password"})
    assert changed.status_code == 200
    assert (await new_client(token=kept).get("/api/me")).status_code == 200  # not asked: tokens stay

    revoked = await api.post("/api/me/password", {"current_password": "second password",
                                                  "new_password": "third password", "revoke_tokens": True})
    assert revoked.status_code == 200
    assert (await new_client(token=kept).get("/api/me")).status_code == 401
    assert (await api.get("/api/me")).status_code == 200  # this browser got a fresh session


async def test_sign_out_everywhere_revokes_sessions_tokens_and_sockets(api, new_client, server):
    await api.register("vic")
    other_browser = new_client()
    assert (await other_browser.login("vic")).status_code == 200
    token = (await api.post("/api/tokens", {"name": "bot"})).json()["token"]
    by_token = await WsClient.connect(server, token=token)
    by_cookie = await WsClient.connect(server, api=other_browser)
    await by_token.request("sub", topic="room:lobby")
    await by_cookie.request("sub", topic="room:lobby")

    assert (await api.post("/api/auth/logout-everywhere")).status_code == 204
    for client in (api, other_browser, new_client(token=token)):
        assert (await client.get("/api/me")).status_code == 401
    assert await by_token.closed(timeout=3) == 4001
    assert await by_cookie.closed(timeout=3) == 1000
