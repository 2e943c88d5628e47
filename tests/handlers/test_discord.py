"""Discord interactions over real HTTP: requests signed with a real Ed25519 key, and a small real HTTP
server in the test standing in for Discord's API (webhook edits, attachments, command registration)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from nacl.signing import SigningKey
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME
from server.discord import COMMANDS, register_commands
from server.presets import demo_preset_values
from server.runtime import Runtime
from tests.support.photos import encode, photo
from tests.support.client import ApiClient
from tests.support.server import running_server

APP_ID = "123456789012345678"
GUILD = "111"
OTHER_GUILD = "222"
EDIT_INTERVAL_SECS = 0.4


class StandIn:
    """What Discord's API received: every webhook edit (time, JSON payload, attachment), and a 429 to hand out."""

    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []
        self.refuse_next: list[float] = []  # retry_after values to answer the next edits with (429)
        self.registered: list[Any] = []
        self.auth: list[str] = []
        self.origin = ""
        self.deleted: list[str] = []  # tokens whose original response was deleted
        self.followups: list[dict[str, Any]] = []


class WebhookEdit(web.RequestHandler):
    def initialize(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    def check_xsrf_cookie(self) -> None:
        return

    def patch(self, app_id: str, token: str) -> None:
        stand_in = self.stand_in
        at = time.monotonic()
        if stand_in.refuse_next:
            retry_after = stand_in.refuse_next.pop(0)
            stand_in.edits.append({"at": at, "token": token, "refused": True})
            self.set_status(429)
            self.finish({"message": "You are being rate limited.", "retry_after": retry_after, "global": False})
            return
        edit: dict[str, Any] = {"at": at, "token": token, "app": app_id, "refused": False, "file": None}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + self.request.body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name == "payload_json":
                    edit["payload"] = json.loads(part.get_payload(decode=True))
                elif name == "files[0]":
                    edit["file"] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        else:
            edit["payload"] = json.loads(self.request.body)
        stand_in.edits.append(edit)
        self.finish({"id": "1"})

    def delete(self, app_id: str, token: str) -> None:
        self.stand_in.deleted.append(token)
        self.set_status(204)
        self.finish()


class Followup(web.RequestHandler):
    def initialize(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    def check_xsrf_cookie(self) -> None:
        return

    def post(self, app_id: str, token: str) -> None:
        self.stand_in.followups.append({"token": token, **json.loads(self.request.body)})
        self.finish({"id": "2"})


class Attachment(web.RequestHandler):
    """Discord's CDN: the photo a /stylize names."""

    def get(self) -> None:
        self.set_header("Content-Type", "image/png")
        self.finish(encode(photo(96, 64)))


class Commands(web.RequestHandler):
    def initialize(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    def check_xsrf_cookie(self) -> None:
        return

    def put(self, app_id: str) -> None:
        self.stand_in.auth.append(self.request.headers.get("Authorization", ""))
        self.stand_in.registered = json.loads(self.request.body)
        self.finish(json.dumps([{**command, "id": str(i), "application_id": app_id}
                                for i, command in enumerate(self.stand_in.registered)]))


@asynccontextmanager
async def discord_stand_in() -> AsyncIterator[tuple[str, StandIn]]:
    stand_in = StandIn()
    app = web.Application([
        (r"/api/v10/webhooks/([0-9]+)/([^/]+)/messages/@original", WebhookEdit, {"stand_in": stand_in}),
        (r"/api/v10/webhooks/([0-9]+)/([^/]+)", Followup, {"stand_in": stand_in}),
        (r"/api/v10/applications/([0-9]+)/commands", Commands, {"stand_in": stand_in}),
        (r"/cdn/photo.png", Attachment),
    ])
    server = HTTPServer(app)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    stand_in.origin = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        yield f"{stand_in.origin}/api/v10", stand_in
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def people(discord) -> AsyncIterator:
    """Signed-in clients of the Discord-enabled server, by name."""
    clients: list[ApiClient] = []

    async def make(name: str) -> ApiClient:
        client = ApiClient(discord[0])
        await client.register(name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@asynccontextmanager
async def discord_server(gen_settings, signing_key: SigningKey, **overrides: Any
                         ) -> AsyncIterator[tuple[str, StandIn, Runtime]]:
    async with discord_stand_in() as (api_base, stand_in):
        settings = gen_settings.model_copy(update={
            "discord_public_key": signing_key.verify_key.encode().hex(), "discord_application_id": APP_ID,
            "discord_api_base": api_base, "discord_guilds": [GUILD], "discord_edit_interval_secs": EDIT_INTERVAL_SECS,
            "imagine_steps": 12, "imagine_side_px": 64, **overrides})
        async with running_server(settings) as (base_url, runtime):
            await runtime.presets.ensure(demo_preset_values(DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME))
            yield base_url, stand_in, runtime


@pytest.fixture
async def discord(gen_settings, signing_key) -> AsyncIterator[tuple[str, StandIn]]:
    async with discord_server(gen_settings, signing_key) as (base_url, stand_in, _runtime):
        yield base_url, stand_in


def signed(key: SigningKey, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body).signature.hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}


def command(name: str, options: dict[str, Any], *, user: str = "42", guild: str | None = GUILD,
            token: str = "tok-1") -> bytes:
    interaction: dict[str, Any] = {
        "id": "9", "application_id": APP_ID, "type": 2, "token": token, "version": 1,
        "data": {"id": "7", "name": name, "type": 1,
                 "options": [{"name": key, "type": 3, "value": value} for key, value in options.items()]},
    }
    if guild is None:
        interaction["user"] = {"id": user, "username": "someone"}
    else:
        interaction["guild_id"] = guild
        interaction["member"] = {"user": {"id": user, "username": "someone"}}
    return json.dumps(interaction).encode()


async def post(base_url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.post("/discord/interactions", content=body, headers=headers)


async def link(base_url: str, browser: ApiClient, key: SigningKey, name: str, discord_user: str) -> None:
    """Links `discord_user` to the signed-in client `browser` (named `name`) with a code from the settings page."""
    code = (await browser.post("/api/discord/link-code")).json()["code"]
    body = command("link", {"code": code.lower()}, user=discord_user)
    answer = (await post(base_url, body, signed(key, body))).json()
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and name in answer["data"]["content"], answer


async def test_signatures_are_checked_and_ping_answers_pong(discord, signing_key):
    base_url, _stand_in = discord
    ping = json.dumps({"id": "1", "type": 1, "application_id": APP_ID, "token": "t", "version": 1}).encode()
    answer = await post(base_url, ping, signed(signing_key, ping))
    assert answer.status_code == 200 and answer.json() == {"type": 1}
    headers = signed(signing_key, ping)
    tampered_body = await post(base_url, ping.replace(b'"id": "1"', b'"id": "2"'), headers)
    assert tampered_body.status_code == 401 and tampered_body.json()["error"]["code"] == "bad_signature"
    tampered_time = await post(base_url, ping, {**headers, "X-Signature-Timestamp": str(int(time.time()) + 1)})
    assert tampered_time.status_code == 401
    stale = await post(base_url, ping, signed(signing_key, ping, int(time.time()) - 3600))
    assert stale.status_code == 401 and "old" in stale.json()["error"]["message"]
    other_key = await post(base_url, ping, signed(SigningKey.generate(), ping))
    assert other_key.status_code == 401
    unsigned = await post(base_url, ping, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    # A valid signature on something that is not a slash command: a clear error, nothing started.
    component = json.dumps({"id": "1", "type": 3, "token": "t", "data": {"custom_id": "x"}}).encode()
    refused = await post(base_url, component, signed(signing_key, component))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_interaction"


async def test_no_public_key_means_404(server):
    body = b'{"type": 1}'
    answer = await post(server, body, {"Content-Type": "application/json"})
    assert answer.status_code == 404


async def test_imagine_is_deferred_then_edited_in_order_with_the_final_image(discord, signing_key, people):
    base_url, stand_in = discord
    alice = await people("alice")
    await link(base_url, alice, signing_key, "alice", "42")
    body = command("imagine", {"prompt": "a red fox in the snow"}, token="tok-fox")
    stand_in.refuse_next = [0.6]  # the first edit is refused with a 429
    started = time.monotonic()
    answer = await post(base_url, body, signed(signing_key, body))
    deferred_in = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() == {"type": 5}
    assert deferred_in < 3.0, deferred_in
    for _ in range(600):
        if any(edit.get("file") and edit["file"][1] == "image/png" for edit in stand_in.edits):
            break
        await asyncio.sleep(0.05)
    edits = stand_in.edits
    assert edits and all(edit["token"] == "tok-fox" for edit in edits)
    final = edits[-1]
    name, mime, png = final["file"]
    assert mime == "image/png" and png.startswith(b"\x89PNG") and name.endswith(".png")
    assert "seed" in final["payload"]["content"] and "a red fox in the snow" in final["payload"]["content"]
    assert final["payload"]["attachments"] == [{"id": 0, "filename": name}]
    # The 429 was honoured: the next edit came no sooner than retry_after.
    assert edits[0]["refused"] and edits[1]["at"] - edits[0]["at"] >= 0.6 - 0.05
    # Rate-limited: no two accepted edits closer than the interval; in order (steps never go back).
    accepted = [edit for edit in edits if not edit["refused"]]
    gaps = [b["at"] - a["at"] for a, b in zip(accepted, accepted[1:])]
    assert all(gap >= EDIT_INTERVAL_SECS - 0.05 for gap in gaps), gaps
    steps = [int(edit["payload"]["content"].split("step ")[1].split("/")[0]) for edit in accepted
             if "step " in edit["payload"]["content"]]
    assert steps == sorted(steps)
    # The job is alice's, through the one lifecycle (public: it was shown in a channel).
    [job] = (await alice.get("/api/jobs?mine=1")).json()["jobs"]
    assert job["status"] == "done" and job["public"] is True and job["prompt"] == "a red fox in the snow"


async def test_unlinked_users_disallowed_guilds_and_refusals_are_ephemeral(discord, signing_key, people):
    base_url, stand_in = discord
    body = command("imagine", {"prompt": "a cat"}, user="77")
    unlinked = (await post(base_url, body, signed(signing_key, body))).json()
    assert unlinked["type"] == 4 and unlinked["data"]["flags"] == 64 and "/link" in unlinked["data"]["content"]
    async with httpx.AsyncClient(base_url=base_url) as anonymous:  # refuse mode (the default) makes no bot account
        assert (await anonymous.get("/api/users/discord_bot")).status_code == 404
    other = command("imagine", {"prompt": "a cat"}, guild=OTHER_GUILD)
    refused = (await post(base_url, other, signed(signing_key, other))).json()
    assert refused["type"] == 4 and refused["data"]["flags"] == 64 and "not enabled" in refused["data"]["content"]
    dm = command("imagine", {"prompt": "a cat"}, guild=None)
    assert (await post(base_url, dm, signed(signing_key, dm))).json()["data"]["flags"] == 64
    bad_code = command("link", {"code": "NOPE2345"})
    assert "unknown or expired" in (await post(base_url, bad_code, signed(signing_key, bad_code))).json()["data"][
        "content"]
    alice = await people("alice")
    await link(base_url, alice, signing_key, "alice", "42")
    unknown_model = command("imagine", {"prompt": "a cat", "model": "no-such-model"})
    answer = (await post(base_url, unknown_model, signed(signing_key, unknown_model))).json()
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "Not started" in answer["data"]["content"]
    unknown_preset = command("imagine", {"prompt": "a cat", "preset": "no-such-preset"})
    answer = (await post(base_url, unknown_preset, signed(signing_key, unknown_preset))).json()
    assert answer["type"] == 4 and "Not started" in answer["data"]["content"]
    unknown_command = command("upscale", {})
    answer = (await post(base_url, unknown_command, signed(signing_key, unknown_command))).json()
    assert answer["type"] == 4 and "Unknown command" in answer["data"]["content"]
    assert (await alice.get("/api/jobs?mine=1")).json()["jobs"] == []
    await asyncio.sleep(0.2)
    assert stand_in.edits == []
    links = (await alice.get("/api/discord/link")).json()
    assert links == {"enabled": True, "links": ["42"]}
    assert (await alice.delete("/api/discord/link")).status_code == 204
    again = command("imagine", {"prompt": "a cat"})
    assert "/link" in (await post(base_url, again, signed(signing_key, again))).json()["data"]["content"]


async def test_discord_register_puts_the_commands(gen_settings):
    async with discord_stand_in() as (api_base, stand_in):
        settings = gen_settings.model_copy(update={"discord_application_id": APP_ID, "discord_api_base": api_base,
                                                   "discord_bot_token": SecretStr("bot-secret")})
        stored = await register_commands(settings)
    assert [command["name"] for command in stored] == ["imagine", "stylize", "link"]
    assert stand_in.registered == COMMANDS and stand_in.auth == ["Bot bot-secret"]


async def wait_for_final(stand_in: StandIn, token: str) -> dict[str, Any]:
    for _ in range(600):
        mine = [edit for edit in stand_in.edits if edit["token"] == token and not edit["refused"]]
        last = mine[-1] if mine else None
        if last and ((last.get("file") and last["file"][1] == "image/png")
                     or "Not started" in last["payload"].get("content", "")):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"no final edit for {token}: {stand_in.edits}")


async def test_stylize_fetches_the_attachment_and_answers_the_styled_image(discord, signing_key, people):
    base_url, stand_in = discord
    alice = await people("alice")
    await link(base_url, alice, signing_key, "alice", "42")
    api_origin = stand_in.origin
    interaction = json.loads(command("stylize", {"preset": "demo-lines"}, token="tok-style"))
    interaction["data"]["options"].append({"name": "image", "type": 11, "value": "555"})
    interaction["data"]["resolved"] = {"attachments": {"555": {"id": "555", "filename": "photo.png", "size": 2000,
                                                               "url": f"{api_origin}/cdn/photo.png"}}}
    body = json.dumps(interaction).encode()
    answer = await post(base_url, body, signed(signing_key, body))
    assert answer.json() == {"type": 5}
    final = await wait_for_final(stand_in, "tok-style")
    assert final["file"], final["payload"]
    assert final["file"] and final["file"][1] == "image/png" and "demo-lines" in final["payload"]["content"]
    [job] = (await alice.get("/api/jobs?mine=1")).json()["jobs"]
    assert job["kind"] == "stylize" and job["status"] == "done"


async def test_a_full_queue_after_the_deferred_answer_says_so(discord, signing_key, people):
    base_url, stand_in = discord
    alice = await people("alice")
    await link(base_url, alice, signing_key, "alice", "42")
    slow = {"model": DEMO_MODEL_NAME, "prompt": "slow", "width": 128, "height": 128, "steps": 150}
    for _ in range(6):  # one runs, five wait: alice's share of the queue is used up
        await alice.post("/api/jobs", slow)
    body = command("imagine", {"prompt": "one more"}, token="tok-full")
    answer = await post(base_url, body, signed(signing_key, body))
    assert answer.json() == {"type": 5}
    for _ in range(200):
        if stand_in.followups:
            break
        await asyncio.sleep(0.05)
    # The "thinking…" message goes; the reason is told to the caller alone.
    assert stand_in.deleted == ["tok-full"]
    [followup] = stand_in.followups
    assert followup["token"] == "tok-full" and followup["flags"] == 64 and "Not started" in followup["content"]
    assert not [edit for edit in stand_in.edits if edit["token"] == "tok-full"]
    for job in (await alice.get("/api/jobs?mine=1")).json()["jobs"]:
        await alice.delete(f"/api/jobs/{job['id']}")


async def wait_for_edit(stand_in: StandIn, token: str, text: str) -> dict[str, Any]:
    for _ in range(600):
        for edit in stand_in.edits:
            if edit["token"] == token and not edit["refused"] and text in edit["payload"].get("content", ""):
                return edit
        await asyncio.sleep(0.05)
    raise AssertionError(f"no edit of {token} saying {text!r}: {stand_in.edits}")


async def wait_for_followup(stand_in: StandIn, token: str) -> dict[str, Any]:
    for _ in range(200):
        for followup in stand_in.followups:
            if followup["token"] == token:
                return followup
        await asyncio.sleep(0.05)
    raise AssertionError(f"no follow-up for {token}: {stand_in.followups}")


async def test_bot_mode_runs_an_unlinked_user_as_the_bot_account_and_a_linked_one_as_themselves(
        gen_settings, signing_key):
    async with discord_server(gen_settings, signing_key, discord_unlinked="bot") as (base_url, stand_in, runtime):
        body = command("imagine", {"prompt": "a harbour at night"}, user="501", token="tok-bot")
        assert (await post(base_url, body, signed(signing_key, body))).json() == {"type": 5}
        final = await wait_for_final(stand_in, "tok-bot")
        assert final["file"], final["payload"]
        name, mime, png = final["file"]
        assert mime == "image/png" and png.startswith(b"\x89PNG")
        assert "a harbour at night" in final["payload"]["content"]
        assert stand_in.followups == [] and stand_in.deleted == []
        # The job is the bot account's, public, in the lane of Discord user 501.
        job = await runtime.jobs.records.get(name.removesuffix(".png"))
        bot = await runtime.discord.bot_user()
        assert (job.owner_id, job.public, job.status, job.queue_lane) == (bot.id, True, "done", "discord-501")
        visitor = ApiClient(base_url)
        alice = ApiClient(base_url)
        try:
            profile = (await visitor.get("/api/users/discord_bot")).json()["user"]
            assert profile["display_name"] == "Discord bot"
            # Nobody signs in as the bot account, whatever they send.
            for password in ("!discord-bot", "", "correct horse battery"):
                assert (await visitor.login("discord_bot", password)).status_code in (400, 401)
            # Nor takes its name.
            taken = await visitor.post("/api/auth/register", {"username": "discord_bot",
                                                              "password": "correct horse battery"})
            assert taken.status_code == 409
            # A linked user still runs as themselves.
            await alice.register("alice")
            await link(base_url, alice, signing_key, "alice", "42")
            body = command("imagine", {"prompt": "a lantern"}, token="tok-alice")
            assert (await post(base_url, body, signed(signing_key, body))).json() == {"type": 5}
            assert (await wait_for_final(stand_in, "tok-alice"))["file"]
            [mine] = (await alice.get("/api/jobs?mine=1")).json()["jobs"]
            assert mine["prompt"] == "a lantern" and mine["status"] == "done"
            assert (await runtime.jobs.records.get(mine["id"])).queue_lane is None
        finally:
            await visitor.aclose()
            await alice.aclose()


async def test_bot_mode_caps_each_discord_user_apart(gen_settings, signing_key):
    async with discord_server(gen_settings, signing_key, discord_unlinked="bot",
                              discord_queue_max_per_user=1) as (base_url, stand_in, _runtime):
        alice = ApiClient(base_url)
        try:
            await alice.register("alice")
            # The worker is busy with a slow job, so what Discord asks for waits.
            slow = {"model": DEMO_MODEL_NAME, "prompt": "slow", "width": 128, "height": 128, "steps": 150}
            slow_id = (await alice.post("/api/jobs", slow)).json()["job"]["id"]
            for _ in range(600):
                if (await alice.get(f"/api/jobs/{slow_id}")).json()["job"]["status"] == "running":
                    break
                await asyncio.sleep(0.05)
            first = command("imagine", {"prompt": "first of 601"}, user="601", token="tok-601a")
            assert (await post(base_url, first, signed(signing_key, first))).json() == {"type": 5}
            await wait_for_edit(stand_in, "tok-601a", "waiting in the queue")
            # Discord user 601 is at their cap (one waiting): refused, told to them alone.
            second = command("imagine", {"prompt": "second of 601"}, user="601", token="tok-601b")
            assert (await post(base_url, second, signed(signing_key, second))).json() == {"type": 5}
            refused = await wait_for_followup(stand_in, "tok-601b")
            assert refused["flags"] == 64 and "Not started" in refused["content"] and "1 jobs waiting" in refused[
                "content"], refused
            assert "tok-601b" in stand_in.deleted
            assert not [edit for edit in stand_in.edits if edit["token"] == "tok-601b"]
            # Discord user 602 runs as the same bot account, and still gets a place of their own.
            other = command("imagine", {"prompt": "first of 602"}, user="602", token="tok-602")
            assert (await post(base_url, other, signed(signing_key, other))).json() == {"type": 5}
            await wait_for_edit(stand_in, "tok-602", "waiting in the queue")
            assert [followup["token"] for followup in stand_in.followups] == ["tok-601b"]
            # Both waiting jobs run once the worker is free.
            await alice.delete(f"/api/jobs/{slow_id}")
            for token in ("tok-601a", "tok-602"):
                final = await wait_for_final(stand_in, token)
                assert final["file"] and final["file"][1] == "image/png", final["payload"]
        finally:
            await alice.aclose()


async def test_bot_mode_never_runs_as_a_persons_account_of_the_bots_name(gen_settings, signing_key):
    async with discord_server(gen_settings, signing_key, discord_unlinked="bot",
                              discord_bot_username="painter") as (base_url, stand_in, _runtime):
        person = ApiClient(base_url)
        try:
            await person.register("painter")  # before the bot account was made: the name is a person's
            body = command("imagine", {"prompt": "a cat"}, user="701")
            answer = (await post(base_url, body, signed(signing_key, body))).json()
            assert answer["type"] == 4 and answer["data"]["flags"] == 64, answer
            assert "belongs to a person" in answer["data"]["content"]
            assert (await person.get("/api/jobs?mine=1")).json()["jobs"] == []
            assert stand_in.edits == []
        finally:
            await person.aclose()
