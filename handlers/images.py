"""Generated images: metadata, the PNG and its thumbnail."""

from __future__ import annotations

from handlers.base import APIHandler

# Image ids never point at other bytes, so browsers and proxies may keep them for good.


class ImageHandler(APIHandler):
    async def get(self, image_id: str) -> None:
        """An image's metadata (size, seed, the A1111 parameters)."""
        self.write_json({"image": await self.runtime.jobs.image(self.principal, image_id)})


class ImageFileHandler(APIHandler):
    async def get(self, image_id: str, variant: str) -> None:
        """The PNG (`file`, with its parameters chunk) or a WebP thumbnail (`thumb`)."""
        thumb = variant == "thumb"
        digest, data = await self.runtime.jobs.image_bytes(self.principal, image_id, thumb=thumb)
        if not thumb:
            self.set_header("Content-Disposition", f'inline; filename="visionary-{image_id[:12]}.png"')
        self.write_blob(data, digest, "image/webp" if thumb else "image/png", immutable=True, shared=False)


default_handlers = [
    (r"/api/images/([0-9a-f]{1,32})", ImageHandler),
    (r"/api/images/([0-9a-f]{1,32})/(file|thumb)", ImageFileHandler),
]
