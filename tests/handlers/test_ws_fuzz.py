"""Fuzzing a live socket: every hostile frame gets an `error` frame, never a crash, and the socket stays usable.

A real server and a real signed-in WebSocket client; hypothesis (fixed budget, derandomised) draws the
frames: bytes that are not msgpack, msgpack that is not a map, maps without a string `op`, unknown ops,
and known ops with fields of every type.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config import Settings
from tests.support.client import ApiClient
from tests.support.server import running_server
from tests.support.ws import WsClient

KNOWN_OPS = ["ping", "sub", "unsub", "chat.send", "chat.edit", "chat.delete", "typing", "gen.submit", "gen.cancel",
             "art.submit", "collab.update"]
FIELDS = ["room", "topic", "since", "text", "id", "message", "job", "session", "data", "model", "prompt", "steps",
          "width", "height", "seed", "loras", "init_image", "preset", "kind"]
REPLY_SECS = 10.0

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=30)
           | st.binary(max_size=30) | st.sampled_from(["room:lobby", "job:1", "user:1", "collab:1", "post:1", "lobby"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
known_op_maps = st.builds(lambda op, fields: {"op": op, **fields}, st.sampled_from(KNOWN_OPS),
                          st.dictionaries(st.sampled_from(FIELDS), values, max_size=5))
not_an_op = (st.dictionaries(st.text(max_size=8), values, max_size=4).filter(lambda m: not isinstance(m.get("op"), str))
             | st.builds(lambda op, rest: {"op": op, **rest}, st.text(max_size=12).filter(lambda op: op not in KNOWN_OPS),
                         st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)))


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


frames = st.one_of(
    st.binary(min_size=0, max_size=200).map(lambda data: ("garbage", data)),
    values.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("not_a_map", packed(v))),
    not_an_op.map(lambda m: ("not_an_op", packed(m))),
    # Twice: the ops are where the handling code is, so they get half of the budget.
    known_op_maps.map(lambda m: ("known_op", packed(m))),
    known_op_maps.map(lambda m: ("known_op", packed({**m, "ref": "r"}))),
)


@pytest.fixture
async def socket(settings: Settings) -> AsyncIterator[WsClient]:
    # Frames arrive faster than a person sends them: the flood limit is not what is under test here.
    settings = settings.model_copy(update={"ws_max_frames_per_sec": 100_000, "chat_send_limit": 100_000})
    async with running_server(settings) as (base_url, _runtime):
        api = ApiClient(base_url)
        await api.register("fuzzer")
        ws = await WsClient.connect(base_url, api=api)
        yield ws
        ws.close()
        await api.aclose()


async def replies_until_pong(ws: WsClient, ref: str) -> list[dict[str, Any]]:
    """Everything the server sent up to the pong for `ref` (frames are handled in order)."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + REPLY_SECS
    while True:
        while ws.events:
            event = ws.events.pop(0)
            if event.get("type") == "pong" and event.get("ref") == ref:
                return seen
            seen.append(event)
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no pong within {REPLY_SECS} s; saw {seen!r}"
        assert await ws._read_more(remaining), f"the server closed the socket ({ws.conn.close_code}); saw {seen!r}"


@pytest.mark.timeout(300)
@settings(max_examples=400, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=frames)
@example(frame=("garbage", b"\x91" * 60_000))  # nested deeper than msgpack's stack
@example(frame=("garbage", b"\xdd\xff\xff\xff\xff"))  # claims four billion items
@example(frame=("not_a_map", packed([{"op": "ping"}])))  # a batch, which clients do not send
@example(frame=("known_op", packed({"op": "sub", "topic": "room:" + "x" * 10_000})))
@example(frame=("known_op", packed({"op": "sub", "topic": "job:99999999999999999999999"})))
@example(frame=("known_op", packed({"op": "chat.send", "room": {"a": 1}, "text": b"\xff"})))
async def test_every_hostile_frame_gets_an_error_and_the_socket_lives_on(socket: WsClient, caplog,
                                                                        frame: tuple[str, bytes]) -> None:
    shape, data = frame
    ref = f"probe-{id(data)}-{len(data)}"
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        await socket.send_raw(data)
        await socket.send("ping", ref=ref)
        replies = await replies_until_pong(socket, ref)
    errors = [event for event in replies if event.get("type") == "error"]
    assert all(event.get("code") != "internal_error" for event in errors), (shape, data[:80], errors)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [], (shape, data[:80])
    if shape != "known_op":
        assert len(errors) == 1 and errors[0]["code"] in ("bad_frame", "unknown_op"), (shape, data[:80], replies)
