"""Serves the built Vue app: hashed assets cached for good, every client route gets index.html.

The public pages people paste into chats — a post (`/p/<id>`) and a share link (`/s/<id>`) —
get Open Graph and Twitter-card tags written into the HTML itself, because link previewers
run no script: title, description, and the image as an absolute URL anyone can read.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado import web

from server.errors import NotFound

# Vite puts a content hash in every file name under assets/, so they never change.
HASHED_ASSETS_DIR = "assets/"
INDEX = "index.html"
SITE_NAME = "Visionary Art"
PUBLIC_PAGE_RE = re.compile(r"(?:p/(?P<post>[0-9]{1,18})|s/(?P<share>[A-Za-z0-9_-]{12}))/?")
# Previewers show about two lines; a post's description may be 5,000 characters.
DESCRIPTION_MAX_CHARS = 200


@dataclass(frozen=True)
class PageCard:
    """What a link preview shows for a page."""

    path: str
    title: str
    description: str
    image_path: str | None  # None: no picture (an NSFW post)
    image_width: int = 0
    image_height: int = 0


def post_card(post: dict[str, Any]) -> PageCard:
    owner = post["owner"]["display_name"] or post["owner"]["username"]
    description = post["description"] or f"By {owner} on {SITE_NAME}"
    cover = post["cover"]
    return PageCard(path=f"/p/{post['id']}", title=post["title"], description=description,
                    image_path=None if post["nsfw"] else cover["url"], image_width=cover["width"],
                    image_height=cover["height"])


def share_card(share: dict[str, Any]) -> PageCard:
    owner = share["owner"]["display_name"] or share["owner"]["username"]
    style = share["preset"]["title"]["en"] if share.get("preset") else None
    description = (f"{owner}'s photo as {style}, made on {SITE_NAME}" if style
                   else f"By {owner} on {SITE_NAME}")
    image = share["image"]
    return PageCard(path=share["url"], title=share["title"], description=description, image_path=image["url"],
                    image_width=image["width"], image_height=image["height"])


def meta_tags(card: PageCard, base_url: str) -> str:
    """The <meta> tags of a card, every value escaped."""
    description = card.description if len(card.description) <= DESCRIPTION_MAX_CHARS \
        else card.description[:DESCRIPTION_MAX_CHARS - 1].rstrip() + "…"
    tags = [("name", "description", description), ("property", "og:type", "website"),
            ("property", "og:site_name", SITE_NAME), ("property", "og:title", card.title),
            ("property", "og:description", description), ("property", "og:url", base_url + card.path),
            ("name", "twitter:title", card.title), ("name", "twitter:description", description)]
    if card.image_path is not None:
        image = base_url + card.image_path
        tags += [("property", "og:image", image), ("property", "og:image:alt", card.title),
                 ("property", "og:image:width", str(card.image_width)),
                 ("property", "og:image:height", str(card.image_height)),
                 ("name", "twitter:card", "summary_large_image"), ("name", "twitter:image", image),
                 ("name", "twitter:image:alt", card.title)]
    else:
        tags.append(("name", "twitter:card", "summary"))
    return "".join(f'<meta {attribute}="{name}" content="{html.escape(value, quote=True)}">'
                   for attribute, name, value in tags)


def with_card(index_html: str, card: PageCard, base_url: str) -> str:
    """index.html with the page's title and its card's tags in the head."""
    title = f"<title>{html.escape(card.title)} · {SITE_NAME}</title>"
    page, replaced = re.subn(r"<title>.*?</title>", lambda _match: title, index_html, count=1, flags=re.S)
    head = (meta_tags(card, base_url) + ("" if replaced else title))
    return page.replace("</head>", head + "</head>", 1)


class FrontendHandler(web.StaticFileHandler):
    _index_cache: dict[str, tuple[int, str]] = {}  # index.html path -> (mtime, text); it changes with a build
    _writing_page = False  # answering with a page of our own, not a file (no file ETag)

    async def get(self, path: str, include_body: bool = True) -> None:
        """A file of the build, or index.html for client-side routes (SPA fallback)."""
        if not (Path(self.root) / path).is_file():
            match = PUBLIC_PAGE_RE.fullmatch(path)
            card = await self._card(match) if match else None
            path = INDEX
            if not (Path(self.root) / path).is_file():
                raise web.HTTPError(503, "The frontend is not built; run `make run` (it runs `npm run build`).")
            if card is not None:
                self._write_page(card, include_body)
                return
        if path == INDEX:
            self.xsrf_token  # noqa: B018 - reading it sets the `_xsrf` cookie the app echoes back
        await super().get(path, include_body)

    async def _card(self, match: re.Match[str]) -> PageCard | None:
        """The card of a public post or share; None when there is none for anyone (the app says so)."""
        runtime = self.settings["runtime"]
        try:
            if match["post"]:
                return post_card(await runtime.community.posts.get(None, int(match["post"])))
            return share_card(await runtime.shares.get(None, match["share"]))
        except NotFound:
            return None

    def _write_page(self, card: PageCard, include_body: bool) -> None:
        self._writing_page = True
        self.xsrf_token  # noqa: B018 - as for index.html
        public_url = self.settings["runtime"].settings.public_url
        base_url = public_url or f"{self.request.protocol}://{self.request.host}"
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(with_card(self._index(), card, base_url) if include_body else None)

    def _index(self) -> str:
        index = Path(self.root) / INDEX
        mtime = index.stat().st_mtime_ns
        cached = self._index_cache.get(str(index))
        if cached is None or cached[0] != mtime:
            cached = self._index_cache[str(index)] = (mtime, index.read_text(encoding="utf-8"))
        return cached[1]

    def compute_etag(self) -> str | None:
        return None if self._writing_page else super().compute_etag()

    def get_cache_time(self, path: str, modified, mime_type: str) -> int:  # type: ignore[no-untyped-def]
        return self.CACHE_MAX_AGE if path.startswith(HASHED_ASSETS_DIR) else 0

    def set_extra_headers(self, path: str) -> None:
        if not path.startswith(HASHED_ASSETS_DIR):
            # index.html names the current asset hashes; it must be revalidated every time.
            self.set_header("Cache-Control", "no-cache")
