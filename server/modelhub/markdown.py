"""Model descriptions: Markdown to HTML that is safe to insert into the page."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# Raw HTML in the source is escaped, not passed through; nh3 then strips anything unsafe that remains.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
MAX_DESCRIPTION_CHARS = 20_000


def render_markdown(text: str) -> str:
    """HTML for a description: no scripts, no event handlers, no javascript: links."""
    return nh3.clean(_MARKDOWN.render(text), link_rel="nofollow noopener noreferrer",
                     url_schemes={"http", "https", "mailto"})
