"""Prompt screening: a configurable blocklist of words and phrases, English and Chinese.

Text is NFKC-normalised and case-folded on both sides, so full-width letters, ligatures
and capitals do not slip past, and invisible format characters (zero-width joiners and
the like) are removed before matching. Latin-script terms match whole words only, so a
term never fires inside a longer word; terms in scripts written without spaces (CJK)
match as substrings, because there are no word boundaries to anchor on.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable

from inference.errors import InvalidRequest

DEFAULT_BLOCKLIST_PATH = Path(__file__).parent / "configs" / "blocklist.txt"


def normalize(text: str) -> str:
    """NFKC, case-fold, drop format characters, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split())


def _is_spaceless_script(term: str) -> bool:
    # Han, Hiragana/Katakana and Hangul are written without spaces between words.
    return any("\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" for ch in term)


class PromptScreen:
    """Refuses prompts that contain a blocked term, naming the term in the reason."""

    def __init__(self, terms: Iterable[str]) -> None:
        self.terms: list[str] = []
        patterns: list[str] = []
        for raw in terms:
            term = normalize(raw)
            if not term or term in self.terms:
                continue
            self.terms.append(term)
            body = re.escape(term).replace(r"\ ", r"\s+")
            patterns.append(body if _is_spaceless_script(term) else rf"(?<!\w){body}(?!\w)")
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_BLOCKLIST_PATH) -> "PromptScreen":
        """One term per line; blank lines and lines starting with '#' are ignored."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))

    def find(self, text: str) -> str | None:
        """The first blocked term in `text`, or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(normalize(text))
        return match.group(0) if match else None

    def check(self, prompt: str) -> None:
        """Raise InvalidRequest(code='prompt_blocked') when the prompt holds a blocked term."""
        term = self.find(prompt)
        if term is not None:
            raise InvalidRequest(
                f"`prompt` contains the blocked term {term!r}; rephrase the prompt without it.",
                code="prompt_blocked",
                field="prompt",
            )
