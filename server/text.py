"""The rules for text people type (names, titles, messages, tags), in one place for every feature.

Text is NFC-normalised and stripped; control characters are refused (line breaks and tabs
only where text may run over several lines); a limit is counted in characters after that.
Tags are one rule everywhere (posts, the gallery filter, hub models).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from server.errors import InvalidInput

# Unicode's control characters (category Cc) are exactly U+0000–U+001F and U+007F–U+009F; line breaks and
# tabs are the ones allowed where text may run over several lines. A regex scans in C: testing the
# category of each character in Python was a fifth of what a chat message cost the server.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_CHARS_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A tag: 1–40 letters (any script) or digits, with _ - . + inside ("sd1.5", "c++", "水彩"), matched whole.
TAG_RE = re.compile(r"[^\W_][\w.+\-]{0,39}")
TAG_RULE = "1–40 letters or digits, with _ - . + inside"


def clean_text(value: Any, field: str, max_chars: int, *, required: bool = False, multiline: bool = True,
               empty_as: str = "") -> str:
    """Normalised, stripped text within ``max_chars``; raises InvalidInput naming ``field``."""
    if value is None:
        value = empty_as
    if not isinstance(value, str):
        raise InvalidInput(f"`{field}` must be a string.", data={"field": field})
    value = unicodedata.normalize("NFC", value).strip()
    if required and not value:
        raise InvalidInput(f"`{field}` must not be empty.", data={"field": field})
    if len(value) > max_chars:
        raise InvalidInput(f"`{field}` must be at most {max_chars:,} characters but is {len(value):,}.",
                           code="too_long", data={"field": field, "limit": max_chars})
    if (CONTROL_CHARS_BUT_LINES if multiline else CONTROL_CHARS).search(value):
        raise InvalidInput(f"`{field}` must not contain control characters.", data={"field": field})
    return value


def clean_tag(value: Any, field: str = "tags") -> str:
    """One tag, lower-cased, a leading # dropped."""
    tag = value.strip().lstrip("#").lower() if isinstance(value, str) else None
    if tag is None or not TAG_RE.fullmatch(tag):
        raise InvalidInput(f"Tags are {TAG_RULE}; {str(value)[:50]!r} is not.", data={"field": field})
    return tag


def clean_tags(value: Any, max_tags: int, field: str = "tags") -> list[str]:
    """A list of tags without repeats (at most ``max_tags``, counted as sent)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise InvalidInput(f"`{field}` must be a list of strings.", data={"field": field})
    if len(value) > max_tags:
        raise InvalidInput(f"At most {max_tags} tags, not {len(value)}.", data={"field": field, "limit": max_tags})
    return list(dict.fromkeys(clean_tag(tag, field) for tag in value if tag.strip()))
