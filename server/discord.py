"""Discord interactions: `/imagine`, `/stylize` and `/link` as slash commands onto the one job lifecycle.

Discord POSTs each interaction to `/discord/interactions`, signed with Ed25519 over
timestamp + body (PyNaCl checks it against the application's public key; stale timestamps are
refused so a captured request cannot be replayed). A command is answered at once with a deferred
response (type 5: "thinking…"), then a follower edits that original response through the webhook
API as the job goes: the queue place, a preview every `discord_edit_interval_secs` (Discord limits
webhook edits; a 429 is honoured with its `retry_after`), and the final image as an attachment with
its seed and settings — Midjourney's rhythm.

A Discord user acts as the account they linked (`/link <code>`, the code shown once on the
settings page), so the same caps, fairness and prompt screening apply; a guild not on the allow-list
gets a clear ephemeral message and nothing is queued. An unlinked user is told to link likewise, or,
with `discord_unlinked = "bot"`, runs as the one bot account (made on first use, no password), in a
queue lane of their own (`server.jobs.queue.Lane`): their own turn and their own cap, counted by the
queue itself, atomically across web processes, as any user's are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from config import Settings
from server.auth import Principal
from server.cache import Cache
from server.errors import AppError, Conflict, InvalidInput, NotFound, Unauthenticated
from server.hub import Hub, frames
from server.imagine import imagine_params
from server.jobs import JobService, Lane
from server.jobs.records import FINAL_EVENTS
from server.presets import PresetService
from server.store.models import DiscordLink, User

log = logging.getLogger(__name__)

# Interaction types (Discord API) and response types.
PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE = 1, 4, 5
EPHEMERAL = 1 << 6
# Option types: string, attachment.
OPTION_STRING, OPTION_ATTACHMENT = 3, 11
# A signed request older (or newer) than this is refused: it may be a replay.
MAX_CLOCK_SKEW_SECS = 5 * 60
# Interaction tokens live 15 minutes; a follower stops a little before.
FOLLOW_MAX_SECS = 14 * 60
LINK_CODE_TTL_SECS = 10 * 60
LINK_CODE_CHARS = 8
LINK_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by hand
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
HTTP_TIMEOUT_SECS = 30.0
MAX_RETRIES_429 = 5
DISCORD_ID_MAX_CHARS = 32  # discord_links.discord_user_id; snowflakes have at most 20 digits
# The bot account's stored "hash": never an argon2 hash, so no password signs in as it; also how we know the
# account with that name is ours and not a person's.
BOT_PASSWORD_HASH = "!discord-bot"
BOT_DISPLAY_NAME = "Discord bot"
BOT_BIO = "Paints for people on Discord who have not linked an account here."

COMMANDS: list[dict[str, Any]] = [
    {"name": "imagine", "type": 1, "description": "Paint a picture from words",
     "options": [
         {"type": OPTION_STRING, "name": "prompt", "description": "What to paint", "required": True,
          "max_length": 2000},
         {"type": OPTION_STRING, "name": "model", "description": "The checkpoint (default: the first)",
          "required": False},
         {"type": OPTION_STRING, "name": "preset", "description": "A style preset (its model and words)",
          "required": False}]},
    {"name": "stylize", "type": 1, "description": "Turn a photo into a style",
     "options": [
         {"type": OPTION_ATTACHMENT, "name": "image", "description": "The photo", "required": True},
         {"type": OPTION_STRING, "name": "preset", "description": "The style preset", "required": True}]},
    {"name": "link", "type": 1, "description": "Link your Discord account to your account on the site",
     "options": [{"type": OPTION_STRING, "name": "code", "description": "The code from your settings page",
                  "required": True}]},
]


class BadSignature(Unauthenticated):
    code = "bad_signature"


class UnknownInteraction(InvalidInput):
    code = "unknown_interaction"


def reply(content: str, *, ephemeral: bool = True) -> dict[str, Any]:
    """An immediate answer (type 4), seen only by the caller when ephemeral."""
    return {"type": CHANNEL_MESSAGE, "data": {"content": content[:2000], "flags": EPHEMERAL if ephemeral else 0,
                                              "allowed_mentions": {"parse": []}}}


@dataclass(eq=False)  # a hub subscriber is kept in a set, by identity
class _JobEvents:
    """A job's events, as they come, for one follower."""

    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        event = frames.decode(frame)
        if isinstance(event, dict):
            self.queue.put_nowait(event)

    def reset(self, topic: str, epoch: str) -> None:
        self.queue.put_nowait({"type": "reset"})


class DiscordService:
    def __init__(self, settings: Settings, db: async_sessionmaker[AsyncSession], cache: Cache, hub: Hub,
                 jobs: JobService, presets: PresetService):
        self._settings = settings
        self._db = db
        self._cache = cache
        self._hub = hub
        self._jobs = jobs
        self._presets = presets
        self._tasks: set[asyncio.Task] = set()
        self._http = AsyncHTTPClient()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.discord_public_key)

    # Signatures

    def verify(self, signature: str | None, timestamp: str | None, body: bytes) -> None:
        """Raise BadSignature unless Discord signed `timestamp + body` recently with our application's key."""
        if not signature or not timestamp:
            raise BadSignature("The request is not signed (X-Signature-Ed25519, X-Signature-Timestamp).")
        try:
            key = VerifyKey(bytes.fromhex(self._settings.discord_public_key or ""))
            key.verify(timestamp.encode() + body, bytes.fromhex(signature))
        except (BadSignatureError, ValueError):
            raise BadSignature("The signature does not match.") from None
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise BadSignature("The signature timestamp is not a number.") from None
        if skew > MAX_CLOCK_SKEW_SECS:
            raise BadSignature(f"The signature is {int(skew)} s old; at most {MAX_CLOCK_SKEW_SECS} s are accepted.")

    # Interactions

    async def handle(self, interaction: dict[str, Any]) -> dict[str, Any]:
        """The answer to one verified interaction (within Discord's 3 s: slow work is deferred)."""
        kind = interaction.get("type")
        if kind == PING:
            return {"type": PONG}
        if kind != APPLICATION_COMMAND:
            raise UnknownInteraction(f"Interaction type {str(kind)[:20]} is not one this bot handles "
                                     f"(PING and slash commands only).")
        data = interaction.get("data") if isinstance(interaction.get("data"), dict) else {}
        name = data.get("name")
        guild = interaction.get("guild_id")
        allowed = self._settings.discord_guilds
        if allowed and str(guild) not in allowed:
            return reply("This bot is not enabled in this server. Ask the site's administrators to allow it.")
        discord_user = _discord_user_id(interaction)
        if discord_user is None:
            raise UnknownInteraction("The interaction names no user.")
        options = _options(data)
        if name == "link":
            return await self._link(discord_user, str(options.get("code", "")))
        if name not in ("imagine", "stylize"):
            return reply(f"Unknown command /{str(name)[:32]}; the commands are /imagine, /stylize and /link.")
        user, lane = await self.linked_user(discord_user), None
        if user is None:
            if self._settings.discord_unlinked != "bot":
                return reply("Your Discord account is not linked yet: open Settings on the site, press "
                             "\"Link Discord\", then send /link with the code it shows.")
            try:
                user = await self.bot_user()
            except AppError as exc:
                return reply(f"Not started: {exc.message}")
            lane = Lane(f"discord-{discord_user}", self._settings.discord_queue_max_per_user)
        token = interaction.get("token")
        if not isinstance(token, str) or not token:
            raise UnknownInteraction("The interaction has no token to answer with.")
        if name == "imagine":
            try:
                params = await self._imagine_params(options)
                # The request's own checks (model, sizes, screening) answer here, seen by the caller alone;
                # storing and queueing it waits until after the answer: Discord wants one within 3 s.
                await self._jobs.kinds.parse(params, None, owner_id=user.id)
            except AppError as exc:
                return reply(f"Not started: {exc.message}")
            self._spawn(self._imagine(user, lane, token, params))
        else:
            self._spawn(self._stylize(user, lane, token, data, options))
        return {"type": DEFERRED_CHANNEL_MESSAGE}

    async def _imagine_params(self, options: dict[str, Any]) -> dict[str, Any]:
        prompt = str(options.get("prompt", "")).strip()
        if not prompt:
            raise InvalidInput("Write what to imagine.", code="invalid_prompt")
        preset_name = options.get("preset")
        if preset_name:
            preset = await self._presets.resolve(str(preset_name))
            recipe = preset.recipe
            if recipe.strength is not None:
                raise InvalidInput(f"The style {preset.title_en!r} starts from a photo: use /stylize.",
                                   code="invalid_preset")
            return {"kind": "txt2img", "model": recipe.checkpoint, "prompt": recipe.prompt(prompt),
                    "negative_prompt": recipe.negative_prompt, "steps": recipe.steps, "guidance": recipe.guidance,
                    "sampler": recipe.sampler, "loras": [list(pair) for pair in recipe.loras], "public": True}
        model = options.get("model")
        return await imagine_params(self._settings, self._jobs, prompt, model=str(model) if model else None)

    async def _imagine(self, user: User, lane: Lane | None, token: str, params: dict[str, Any]) -> None:
        """Queue the checked job (the caps may still refuse it: the queue is full), then follow it."""
        editor = _Editor(self, token)
        try:
            job = await self._jobs.submit(user, params, lane=lane)
        except AppError as exc:
            await editor.refuse(f"Not started: {exc.message}")
            return
        await self._follow(user, token, job["id"], str(params.get("prompt", "")), editor)

    async def _stylize(self, user: User, lane: Lane | None, token: str, data: dict[str, Any],
                       options: dict[str, Any]) -> None:
        """Fetch the attached photo, queue a stylize job, then follow it (errors become the message)."""
        editor = _Editor(self, token)
        try:
            attachment = ((data.get("resolved") or {}).get("attachments") or {}).get(str(options.get("image")))
            if not isinstance(attachment, dict) or not attachment.get("url"):
                raise InvalidInput("Attach a photo as `image`.", code="not_an_image")
            if int(attachment.get("size") or 0) > MAX_ATTACHMENT_BYTES:
                raise InvalidInput("The photo is too large.", code="image_too_large")
            photo = await self._download(str(attachment["url"]))
            job = await self._jobs.submit(user, {"kind": "stylize", "preset": options.get("preset"),
                                                 "public": True}, photo, lane=lane)
        except AppError as exc:
            await editor.refuse(f"Not started: {exc.message}")
            return
        except Exception:
            log.exception("discord /stylize could not start")
            await editor.refuse("Not started: something went wrong on our side.")
            return
        await self._follow(user, token, job["id"], str(options.get("preset")), editor)

    async def _download(self, url: str) -> bytes:
        """The attachment's bytes, read no further than the size limit."""
        received = bytearray()

        def collect(chunk: bytes) -> None:
            if len(received) + len(chunk) > MAX_ATTACHMENT_BYTES:
                raise InvalidInput("The photo is too large.", code="image_too_large")
            received.extend(chunk)

        try:
            await self._http.fetch(HTTPRequest(url, request_timeout=HTTP_TIMEOUT_SECS, streaming_callback=collect))
        except (HTTPClientError, OSError) as exc:
            raise InvalidInput(f"The photo could not be fetched from Discord ({exc}).", code="invalid_image") from None
        return bytes(received)

    # Following a job

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, user: User, token: str, job_id: str, title: str, editor: "_Editor | None" = None
                      ) -> None:
        """Edit the original response as the job goes; the last edit is the image (or why there is none)."""
        editor = editor or _Editor(self, token)
        events = _JobEvents()
        topic = f"job:{job_id}"
        await self._hub.subscribe(topic, events)
        deadline = time.monotonic() + FOLLOW_MAX_SECS
        try:
            job = await self._jobs.get(Principal(user=user), job_id)
            final = None if job["status"] in ("queued", "running") else {"type": f"gen.{job['status']}"}
            if job["status"] == "queued":
                await editor.progress({"content": _queued_text(title, job.get("place"))})
            while final is None and time.monotonic() < deadline:
                try:
                    event = await asyncio.wait_for(events.queue.get(), timeout=5.0)
                except TimeoutError:
                    job = await self._jobs.get(Principal(user=user), job_id)  # in case an event was lost
                    if job["status"] not in ("queued", "running"):
                        final = {"type": f"gen.{job['status']}"}
                    continue
                kind = event.get("type")
                if kind in FINAL_EVENTS:
                    final = event
                elif kind == "gen.queued":
                    await editor.progress({"content": _queued_text(title, event.get("place"))})
                elif kind == "gen.progress":
                    await editor.progress({"content": f"**{title[:200]}** — step {event.get('step')}/"
                                                      f"{event.get('total')}"})
                elif kind == "gen.preview" and isinstance(event.get("image"), bytes):
                    await editor.progress({"content": f"**{title[:200]}** — step {event.get('step')}/"
                                                      f"{event.get('total')}"},
                                          file=("preview.webp", str(event.get("mime", "image/webp")), event["image"]))
            await self._finish(user, editor, job_id, title, final)
        except Exception:
            log.exception("discord follower of job %s failed", job_id)
            await editor.final({"content": "Something went wrong on our side; the job may still finish on the site."})
        finally:
            await self._hub.unsubscribe(topic, events)

    async def _finish(self, user: User, editor: "_Editor", job_id: str, title: str,
                      final: dict[str, Any] | None) -> None:
        job = await self._jobs.get(Principal(user=user), job_id)
        if job["status"] != "done" or not job["images"]:
            why = (job.get("error") or {}).get("message") or job["status"]
            if final is None:
                why = "it took longer than Discord lets a bot answer; see it on the site"
            await editor.final({"content": f"**{title[:200]}** — not finished: {why}"[:2000]})
            return
        image = job["images"][0]
        _digest, png = await self._jobs.image_bytes(Principal(user=user), image["id"], thumb=False)
        content = (f"**{title[:300]}**\nseed {image['seed']} · {job.get('steps')} steps · {job.get('sampler')} · "
                   f"CFG {job.get('guidance')} · {image['width']}×{image['height']} · {job['model']}")
        await editor.final({"content": content[:2000]}, file=(f"{job_id}.png", "image/png", png))

    # Linking accounts

    async def link_code(self, user: User) -> dict[str, Any]:
        """A one-time code to send with `/link` in Discord (valid for a few minutes)."""
        code = "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_CHARS))
        await self._cache.set(f"discord-link:{code}", str(user.id).encode(), LINK_CODE_TTL_SECS)
        return {"code": code, "expires_in": LINK_CODE_TTL_SECS}

    async def _link(self, discord_user: str, code: str) -> dict[str, Any]:
        code = code.strip().upper()
        key = f"discord-link:{code}"
        found = await self._cache.get(key) if code else None
        if found is None:
            return reply("That code is unknown or expired: get a new one from Settings on the site.")
        await self._cache.delete(key)
        user_id = int(found)
        async with self._db() as db:
            await db.execute(delete(DiscordLink).where(DiscordLink.discord_user_id == discord_user))
            db.add(DiscordLink(discord_user_id=discord_user, user_id=user_id))
            try:
                await db.commit()
            except IntegrityError:
                return reply("That account could not be linked; try again.")
            user = await db.get(User, user_id)
        return reply(f"Linked: your commands now run as {user.username if user else 'your account'}.")

    async def linked_user(self, discord_user: str) -> User | None:
        async with self._db() as db:
            row = (await db.execute(select(User).join(DiscordLink, DiscordLink.user_id == User.id)
                                    .where(DiscordLink.discord_user_id == discord_user))).first()
        return row[0] if row else None

    async def bot_user(self) -> User:
        """The account unlinked Discord users run as (`discord_unlinked = "bot"`), made on first use."""
        name = self._settings.discord_bot_username
        async with self._db() as db:
            user = await db.scalar(select(User).where(User.username == name))
            if user is None:
                db.add(User(username=name, password_hash=BOT_PASSWORD_HASH, display_name=BOT_DISPLAY_NAME,
                            bio=BOT_BIO))
                try:
                    await db.commit()
                except IntegrityError:  # another web process made it a moment ago
                    await db.rollback()
                user = await db.scalar(select(User).where(User.username == name))
        if user is None or user.password_hash != BOT_PASSWORD_HASH:
            log.error("discord bot mode: the account %r is a person's; set VA_DISCORD_BOT_USERNAME to a free name",
                      name)
            raise Conflict(f"The bot's account name {name!r} belongs to a person here; the site's administrators "
                           f"must give the bot another name.", code="username_taken")
        return user

    async def links(self, user: User) -> list[str]:
        """The Discord user ids linked to this account."""
        async with self._db() as db:
            return list(await db.scalars(select(DiscordLink.discord_user_id).where(DiscordLink.user_id == user.id)))

    async def unlink(self, user: User) -> None:
        async with self._db() as db:
            await db.execute(delete(DiscordLink).where(DiscordLink.user_id == user.id))
            await db.commit()

    # The Discord API

    async def send_edit(self, token: str, payload: dict[str, Any],
                        file: tuple[str, str, bytes] | None) -> float | None:
        """PATCH the original response once; the seconds to wait when Discord answered 429, else None."""
        settings = self._settings
        url = f"{settings.discord_api_base}/webhooks/{settings.discord_application_id}/{token}/messages/@original"
        if file is None:
            headers, body = {"Content-Type": "application/json"}, json.dumps(payload).encode()
        else:
            name, mime, data = file
            payload = {**payload, "attachments": [{"id": 0, "filename": name}]}
            headers, body = _multipart(payload, name, mime, data)
        try:
            await self._http.fetch(HTTPRequest(url, method="PATCH", headers=headers, body=body,
                                               request_timeout=HTTP_TIMEOUT_SECS))
        except HTTPClientError as exc:
            if exc.code == 429 and exc.response is not None:
                return _retry_after(exc.response)
            log.warning("discord edit refused: %s", exc)
        except OSError as exc:
            log.warning("discord edit failed: %s", exc)
        return None

    async def refuse(self, token: str, content: str) -> None:
        """Take the deferred "thinking…" message away and tell the caller alone (an ephemeral follow-up)."""
        settings = self._settings
        hook = f"{settings.discord_api_base}/webhooks/{settings.discord_application_id}/{token}"
        body = json.dumps({"content": content[:2000], "flags": EPHEMERAL, "allowed_mentions": {"parse": []}})
        for request in (HTTPRequest(f"{hook}/messages/@original", method="DELETE", request_timeout=HTTP_TIMEOUT_SECS),
                        HTTPRequest(hook, method="POST", headers={"Content-Type": "application/json"}, body=body,
                                    request_timeout=HTTP_TIMEOUT_SECS)):
            try:
                await self._http.fetch(request)
            except (HTTPClientError, OSError) as exc:
                log.warning("discord refusal not delivered: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def register_commands(settings: Settings) -> list[dict[str, Any]]:
    """PUT the slash commands (global) with the bot token (`run.py discord-register`); what Discord stored."""
    if not settings.discord_application_id or not settings.discord_bot_token:
        raise NotFound("Set discord_application_id and discord_bot_token (VA_DISCORD_*) first.")
    response = await AsyncHTTPClient().fetch(HTTPRequest(
        f"{settings.discord_api_base}/applications/{settings.discord_application_id}/commands", method="PUT",
        headers={"Authorization": f"Bot {settings.discord_bot_token.get_secret_value()}",
                 "Content-Type": "application/json"},
        body=json.dumps(COMMANDS), request_timeout=HTTP_TIMEOUT_SECS))
    return json.loads(response.body)


class _Editor:
    """Edits of one original response: at most one per interval, in order, 429s waited out."""

    def __init__(self, service: DiscordService, token: str):
        self._service = service
        self._token = token
        self._interval = service._settings.discord_edit_interval_secs
        self._last = 0.0

    async def progress(self, payload: dict[str, Any], file: tuple[str, str, bytes] | None = None) -> None:
        """A progress edit, skipped when the last one was too recent (the next state will come)."""
        if time.monotonic() - self._last < self._interval:
            return
        await self._send(payload, file)

    async def final(self, payload: dict[str, Any], file: tuple[str, str, bytes] | None = None) -> None:
        """The last edit: waits its turn, never skipped."""
        wait = self._interval - (time.monotonic() - self._last)
        if wait > 0:
            await asyncio.sleep(wait)
        await self._send(payload, file)

    async def refuse(self, content: str) -> None:
        """The job could not start after the deferred answer: say so to the caller alone."""
        await self._service.refuse(self._token, content)

    async def _send(self, payload: dict[str, Any], file: tuple[str, str, bytes] | None) -> None:
        for _ in range(MAX_RETRIES_429):
            retry_after = await self._service.send_edit(self._token, payload, file)
            self._last = time.monotonic()
            if retry_after is None:
                return
            await asyncio.sleep(retry_after)
        log.warning("discord kept answering 429; an edit was dropped")


def _discord_user_id(interaction: dict[str, Any]) -> str | None:
    member = interaction.get("member") if isinstance(interaction.get("member"), dict) else {}
    user = member.get("user") or interaction.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    user_id = str(user_id) if isinstance(user_id, (str, int)) else ""
    return user_id if user_id.isascii() and user_id.isdigit() and len(user_id) <= DISCORD_ID_MAX_CHARS else None


def _options(data: dict[str, Any]) -> dict[str, Any]:
    options = data.get("options")
    if not isinstance(options, list):
        return {}
    return {str(item.get("name")): item.get("value") for item in options if isinstance(item, dict)}


def _queued_text(title: str, place: Any) -> str:
    return f"**{title[:200]}** — waiting in the queue" + (f" (#{place})" if isinstance(place, int) else "")


def _retry_after(response: Any) -> float:
    try:
        return max(0.0, float(json.loads(response.body).get("retry_after")))
    except (ValueError, TypeError, AttributeError):
        return max(0.0, float(response.headers.get("Retry-After", "1") or 1))


def _multipart(payload: dict[str, Any], name: str, mime: str, data: bytes) -> tuple[dict[str, str], bytes]:
    """`payload_json` and `files[0]`, as Discord's message endpoints take an attachment."""
    boundary = uuid.uuid4().hex
    parts = [
        (f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n'
         f"Content-Type: application/json\r\n\r\n").encode() + json.dumps(payload).encode() + b"\r\n",
        (f'--{boundary}\r\nContent-Disposition: form-data; name="files[0]"; filename="{name}"\r\n'
         f"Content-Type: {mime}\r\n\r\n").encode() + data + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, b"".join(parts)
