"""Serves the built Vue app: hashed assets cached for good, every client route gets index.html."""

from __future__ import annotations

from pathlib import Path

from tornado import web

# Vite puts a content hash in every file name under assets/, so they never change.
HASHED_ASSETS_DIR = "assets/"


class FrontendHandler(web.StaticFileHandler):
    async def get(self, path: str, include_body: bool = True) -> None:
        """A file of the build, or index.html for client-side routes (SPA fallback)."""
        if not (Path(self.root) / path).is_file():
            path = "index.html"
            if not (Path(self.root) / path).is_file():
                raise web.HTTPError(503, "The frontend is not built; run `make run` (it runs `npm run build`).")
        if path == "index.html":
            self.xsrf_token  # noqa: B018 - reading it sets the `_xsrf` cookie the app echoes back
        await super().get(path, include_body)

    def get_cache_time(self, path: str, modified, mime_type: str) -> int:  # type: ignore[no-untyped-def]
        return self.CACHE_MAX_AGE if path.startswith(HASHED_ASSETS_DIR) else 0

    def set_extra_headers(self, path: str) -> None:
        if not path.startswith(HASHED_ASSETS_DIR):
            # index.html names the current asset hashes; it must be revalidated every time.
            self.set_header("Cache-Control", "no-cache")
