"""Prompt screening: the corpus of bypasses and benign look-alikes, both directions, and the lists' files."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from inference.errors import InvalidRequest
from inference.requests import MAX_PROMPT_CHARS
from inference.screening import PromptScreen

CORPUS_DIR = Path(__file__).parent / "screening_corpus"
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")
# Screening runs on the event loop for every submitted job: a long prompt must stay cheap.
MAX_SCREEN_SECS = 0.05


def corpus(name: str) -> list[str]:
    """One prompt per line; `#` lines are comments; \\uXXXX / \\UXXXXXXXX stand for invisible characters."""
    lines = (CORPUS_DIR / name).read_text(encoding="utf-8").splitlines()
    return [ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), line)
            for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def screen() -> PromptScreen:
    return PromptScreen.load()


def test_the_corpus_both_directions(screen: PromptScreen) -> None:
    bypasses, benign = corpus("bypasses.txt"), corpus("benign.txt")
    missed = [prompt for prompt in bypasses if screen.find(prompt) is None]
    refused = [(prompt, screen.find(prompt)) for prompt in benign if screen.find(prompt) is not None]
    print(f"\nscreening corpus: bypasses caught {len(bypasses) - len(missed)}/{len(bypasses)}, "
          f"benign passed {len(benign) - len(refused)}/{len(benign)}")
    assert len(bypasses) >= 75 and len(benign) >= 45
    assert not missed, f"bypasses not caught: {missed!r}"
    assert not refused, f"benign prompts refused (prompt, phrase): {refused!r}"


def test_a_refusal_names_the_listed_phrase(screen: PromptScreen) -> None:
    with pytest.raises(InvalidRequest) as caught:
        screen.check("a ｃ.ｓ.ａ.ｍ photo")
    assert caught.value.code == "prompt_blocked" and caught.value.field == "prompt"
    assert "'csam'" in caught.value.message
    assert screen.find("兒 童 色 情") == "儿童色情"
    screen.check("a child flying a kite in a meadow")


def test_words_match_whole_not_inside_longer_words() -> None:
    screen = PromptScreen(["gore", "blood bath"])
    for prompt in ("a GORE scene", "ｇｏｒｅ at night", "go\u200bre", "a Blood   Bath", "bloodbath", "g0re"):
        assert screen.find(prompt) is not None, prompt
    for prompt in ("gorecki symphony", "a bloody mary", "a red sunset", "blood bathroom"):
        assert screen.find(prompt) is None, prompt


def test_an_allowed_phrase_excuses_only_the_matches_inside_it() -> None:
    screen = PromptScreen(["dragon"], allowed=["dragon fruit"])
    assert screen.find("a bowl of dragon fruit") is None
    assert screen.find("a dragon eating dragon fruit") == "dragon"


def test_operators_extend_the_bundled_lists(tmp_path: Path) -> None:
    (tmp_path / "en.block.txt").write_text("# ours\n\nDragon\n", encoding="utf-8")
    (tmp_path / "fr.block.txt").write_text("pédopornographie\n", encoding="utf-8")
    (tmp_path / "en.allow.txt").write_text("dragon fruit\n", encoding="utf-8")
    screen = PromptScreen.load(tmp_path)
    assert "Dragon" in screen.terms and "csam" in screen.terms  # merged with the bundled ones
    assert screen.find("a DRAGON") == "Dragon"
    assert screen.find("pedopornographie") == "pédopornographie"
    assert screen.find("dragon fruit salad") is None
    assert screen.find("c s a m") == "csam"
    with pytest.raises(FileNotFoundError):
        PromptScreen.load(tmp_path / "missing")


def test_a_long_prompt_is_screened_quickly(screen: PromptScreen) -> None:
    prompts = [("c " * MAX_PROMPT_CHARS)[:MAX_PROMPT_CHARS], ("儿 " * MAX_PROMPT_CHARS)[:MAX_PROMPT_CHARS],
               ("a child flying a kite, " * 100)[:MAX_PROMPT_CHARS], "c" + " " * (MAX_PROMPT_CHARS - 1),
               "1" * MAX_PROMPT_CHARS, "l!" * (MAX_PROMPT_CHARS // 2)]  # units that read as letter or separator
    for prompt in prompts:
        screen.find(prompt)  # warm
        started = time.perf_counter()
        screen.find(prompt)
        assert time.perf_counter() - started < MAX_SCREEN_SECS, prompt[:30]
