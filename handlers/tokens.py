"""API tokens: create (secret shown once), list, revoke."""

from __future__ import annotations

from pydantic import BaseModel

from handlers.base import APIHandler
from handlers.render import token_json


class TokenCreate(BaseModel):
    name: str


class TokensHandler(APIHandler):
    async def get(self) -> None:
        """My tokens, without their secrets."""
        principal = self.require_user()
        tokens = await self.tokens.list(principal.user.id)
        self.write_json({"tokens": [token_json(token) for token in tokens]})

    async def post(self) -> None:
        """Mint a token; the response is the only place its secret appears."""
        principal = self.require_user()
        created = await self.tokens.create(principal.user.id, self.parse(TokenCreate).name)
        self.write_json({"token": created.secret, "api_token": token_json(created.token)}, status=201)


class TokenHandler(APIHandler):
    async def delete(self, token_id: str) -> None:
        """Revoke a token."""
        principal = self.require_user()
        await self.tokens.revoke(principal.user.id, int(token_id))
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"/api/tokens", TokensHandler),
    (r"/api/tokens/([0-9]{1,18})", TokenHandler),
]
