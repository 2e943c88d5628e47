"""Abuse limits on the WebSocket: chat refs, edits, typing, replays, subscriptions, topic names (both backends)."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import make_settings
from tests.support.client import ApiClient
from tests.support.server import running_server
from tests.support.ws import WsClient


async def test_a_ref_is_a_retry_only_with_the_same_text_and_only_for_a_while(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", chat_ref_ttl_secs=2)
    async with running_server(settings) as (base_url, _):
        api = ApiClient(base_url)
        sockets = []
        try:
            await api.register("rita")
            for _ in range(2):
                sockets.append(await WsClient.connect(base_url, api=api))
                await sockets[-1].request("sub", topic="room:lobby")
            first, second = sockets

            async def send(ws, ref, text):
                await ws.send("chat.send", ref=ref, room="lobby", text=text)
                return await ws.wait_for(lambda e: e.get("ref") == ref and e["type"] in ("ack", "error"))

            stored = (await send(first, 1, "hello"))["message"]
            retried = await send(first, 1, "hello")
            assert retried["type"] == "ack" and retried["message"]["id"] == stored["id"]
            # A script numbering refs 1, 2, 3 again on a new connection is told, not silently dropped.
            reused = await send(second, 1, "a different message")
            assert reused["type"] == "error" and reused["code"] == "ref_reused", reused
            await asyncio.sleep(2.1)  # refs are remembered for chat_ref_ttl_secs
            later = await send(second, 1, "a different message")
            assert later["type"] == "ack" and later["message"]["id"] != stored["id"]
            history = (await api.get("/api/rooms/lobby/messages")).json()["messages"]
            assert [m["text"] for m in history] == ["a different message", "hello"]
        finally:
            for ws in sockets:
                ws.close()
            await api.aclose()


async def test_edits_are_throttled_and_typing_is_collapsed(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", chat_edit_limit=3, typing_interval_secs=5)
    async with running_server(settings) as (base_url, _):
        writer, reader = ApiClient(base_url), ApiClient(base_url)
        ws_writer = ws_reader = None
        try:
            await writer.register("wendy")
            await reader.register("ray")
            ws_writer = await WsClient.connect(base_url, api=writer)
            ws_reader = await WsClient.connect(base_url, api=reader)
            for ws in (ws_writer, ws_reader):
                await ws.request("sub", topic="room:lobby")
            message = (await ws_writer.request("chat.send", room="lobby", text="draft"))["message"]
            replies = [await ws_writer.request("chat.edit", room="lobby", message=message["id"], text=f"draft {i}")
                       for i in range(4)]
            assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error"]
            assert replies[-1]["code"] == "rate_limited" and replies[-1]["data"]["retry_after"] >= 1
            assert "try again in" in replies[-1]["message"]
            for _ in range(10):
                await ws_writer.send("typing", room="lobby")
            await ws_writer.request("ping")  # every typing frame has been handled
            await ws_reader.wait_type("typing")
            await asyncio.sleep(0.3)
            await ws_reader.request("ping")
            assert [e for e in ws_reader.events if e.get("type") == "typing"] == []
        finally:
            for ws in (ws_writer, ws_reader):
                if ws is not None:
                    ws.close()
            await writer.aclose()
            await reader.aclose()


async def test_replays_and_subscriptions_are_bounded(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", ws_replay_limit=3, ws_max_subscriptions=4)
    async with running_server(settings) as (base_url, _):
        first = await WsClient.connect(base_url)
        try:
            for _ in range(3):
                assert (await first.request("sub", topic="room:lobby", since=0))["type"] == "ack"
                await first.request("unsub", topic="room:lobby")
            refused = await first.request("sub", topic="room:lobby", since=0)
            assert refused["type"] == "error" and refused["code"] == "rate_limited"
            # Anonymous: counted per address, so a new socket does not start afresh.
            second = await WsClient.connect(base_url)
            try:
                assert (await second.request("sub", topic="room:lobby", since=0))["code"] == "rate_limited"
            finally:
                second.close()
            for i in range(4):
                assert (await first.request("sub", topic=f"room:r{i}"))["type"] == "ack"
            too_many = await first.request("sub", topic="room:r4")
            assert too_many["type"] == "error" and too_many["code"] == "too_many_subscriptions"
            await first.request("unsub", topic="room:r0")
            assert (await first.request("sub", topic="room:r4"))["type"] == "ack"
        finally:
            first.close()


async def test_topic_names_are_matched_whole_and_leave_no_ghosts(backend, tmp_path):
    async with running_server(make_settings(backend, tmp_path / "data")) as (base_url, runtime):
        ghost, watcher = ApiClient(base_url), ApiClient(base_url)
        try:
            await ghost.register("gus")
            await watcher.register("wil")
            socket = await WsClient.connect(base_url, api=ghost)
            for topic in ("room:lobby\n", "collab:" + "0" * 32 + "\n", "user:1\n"):
                refused = await socket.request("sub", topic=topic)
                assert refused["type"] == "error" and refused["code"] == "bad_topic", (topic, refused)
            socket.close()
            await asyncio.sleep(0.2)
            other = await WsClient.connect(base_url, api=watcher)
            try:
                await other.request("sub", topic="room:lobby")
                presence = await other.wait_type("presence")
                assert [u["username"] for u in presence["users"]] == [], presence
            finally:
                other.close()
            # The presence endpoint checks the name too, and reading a room costs nothing.
            assert (await watcher.get("/api/rooms/lobby%0A/presence")).status_code == 400
            for _ in range(50):
                assert (await watcher.get(f"/api/rooms/r-{uuid.uuid4().hex}/presence")).json() == {"users": []}
            if not backend.services:
                assert len(runtime.presence._rooms) <= 1  # only a room someone is in
        finally:
            await ghost.aclose()
            await watcher.aclose()
