"""Discord: the interactions endpoint (signed by Discord) and linking a Discord user to an account."""

from __future__ import annotations

from handlers.base import APIHandler
from server.discord import DiscordService
from server.errors import InvalidInput, NotFound


class InteractionsHandler(APIHandler):
    """`POST /discord/interactions`: Ed25519-signed by Discord; 404 while no public key is set."""

    @property
    def discord(self) -> DiscordService:
        return self.runtime.discord

    def check_xsrf_cookie(self) -> None:
        # Discord sends no cookies; the signature over the body is the proof (checked in `post`).
        return

    async def post(self) -> None:
        """Verify the signature, then answer PING or a slash command (deferred when it starts a job)."""
        if not self.discord.enabled:
            raise NotFound("Discord interactions are not set up here.")
        headers = self.request.headers
        self.discord.verify(headers.get("X-Signature-Ed25519"), headers.get("X-Signature-Timestamp"), self.body)
        payload = self.json_body()
        if not payload:
            raise InvalidInput("The interaction is empty.", code="invalid_json")
        self.write_json(await self.discord.handle(payload))


class LinkCodeHandler(APIHandler):
    async def post(self) -> None:
        """A one-time code to send with `/link` in Discord."""
        user = self.require_user().user
        self.write_json(await self.runtime.discord.link_code(user), status=201)


class LinkHandler(APIHandler):
    async def get(self) -> None:
        """Whether Discord is set up here, and the Discord accounts linked to mine."""
        user = self.require_user().user
        self.write_json({"enabled": self.runtime.discord.enabled, "links": await self.runtime.discord.links(user)})

    async def delete(self) -> None:
        """Unlink every Discord account from mine."""
        await self.runtime.discord.unlink(self.require_user().user)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"/discord/interactions", InteractionsHandler),
    (r"/api/discord/link-code", LinkCodeHandler),
    (r"/api/discord/link", LinkHandler),
]
