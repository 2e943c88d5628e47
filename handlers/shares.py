"""Share links to one image: made by its owner, opened by anyone with the link."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, StrictStr

from handlers.base import APIHandler
from server.shares import ShareService


class ShareBody(BaseModel):
    image: StrictStr = Field(max_length=32)
    title: StrictStr | None = None
    show_original: StrictBool = False


class SharesBase(APIHandler):
    @property
    def shares(self) -> ShareService:
        return self.runtime.shares


class SharesHandler(SharesBase):
    async def post(self) -> None:
        """Share one of one's images (`{image, title?, show_original?}`); 201 new, 200 the existing link."""
        user = self.require_user().user
        body = self.parse(ShareBody)
        share, created = await self.shares.share(user, body.image, title=body.title, show_original=body.show_original)
        self.write_json({"share": share}, status=201 if created else 200)


class ShareHandler(SharesBase):
    async def get(self, share_id: str) -> None:
        """A share as anyone with the link sees it."""
        self.write_json({"share": await self.shares.get(self.principal, share_id)})

    async def delete(self, share_id: str) -> None:
        """Remove the link (owner or moderator)."""
        await self.shares.delete(self.require_user().user, share_id)
        self.set_status(204)
        self.finish()


class ShareOriginalHandler(SharesBase):
    async def get(self, share_id: str) -> None:
        """The photo the shared image was made from, when its owner chose to show it (WebP, no metadata)."""
        digest, data = await self.shares.original(self.principal, share_id)
        self.write_blob(data, digest, "image/webp", immutable=False, shared=False)  # the owner may stop showing it


SHARE_ID = r"([A-Za-z0-9_-]{12})"

default_handlers = [
    (r"/api/shares", SharesHandler),
    (rf"/api/shares/{SHARE_ID}", ShareHandler),
    (rf"/api/shares/{SHARE_ID}/original", ShareOriginalHandler),
]
