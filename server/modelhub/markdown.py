"""Model descriptions: Markdown to HTML that is safe to insert into the page."""

from __future__ import annotations

from typing import Any, Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

MAX_DESCRIPTION_CHARS = 20_000


def _image_as_link(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image is shown as a link to it, never loaded: a remote image tells its host who read the page
    (and the Content-Security-Policy would block it anyway). Inside a link it is its alt text."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env)
    depth = sum(1 if t.type == "link_open" else -1 if t.type == "link_close" else 0 for t in tokens[:idx])
    if depth > 0:
        return escapeHtml(alt)
    return f'<a href="{escapeHtml(str(src))}">{escapeHtml(alt or str(src))}</a>'


# Raw HTML in the source is escaped, not passed through; nh3 then strips anything unsafe that remains.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
_MARKDOWN.add_render_rule("image", _image_as_link)
# nh3's default tags without <img>: the renderer makes none, and a second guard costs nothing.
_TAGS = set(nh3.ALLOWED_TAGS) - {"img"}


def render_markdown(text: str) -> str:
    """HTML for a description: no scripts, no event handlers, no javascript: links, no images."""
    return nh3.clean(_MARKDOWN.render(text), link_rel="nofollow noopener noreferrer",
                     url_schemes={"http", "https", "mailto"}, tags=_TAGS)
