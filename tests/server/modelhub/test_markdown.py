"""Model descriptions: Markdown to safe HTML that loads nothing from other hosts."""

from __future__ import annotations

import pytest

from server.modelhub.markdown import render_markdown


@pytest.mark.parametrize("source", [
    "![a cat](https://tracker.example/pixel.png)",
    "![a cat](https://tracker.example/pixel.png \"title\")",
    "![a cat][pic]\n\n[pic]: https://tracker.example/pixel.png",
    "![a cat](//tracker.example/pixel.png)",
    "![a cat](/api/hub/models/1/thumbnail)",
])
def test_an_image_becomes_a_link_to_it(source: str) -> None:
    html = render_markdown(source)
    assert "<img" not in html and "src=" not in html
    assert ">a cat</a>" in html and 'rel="nofollow noopener noreferrer"' in html


def test_an_image_inside_a_link_keeps_the_link_and_its_alt_text() -> None:
    html = render_markdown("[![badge](https://img.example/b.svg)](https://example.org/project)")
    assert "<img" not in html
    assert html.count("<a ") == 1 and 'href="https://example.org/project"' in html and "badge" in html


def test_images_without_alt_text_name_their_address_and_data_urls_go() -> None:
    assert ">https://img.example/x.png</a>" in render_markdown("![](https://img.example/x.png)")
    html = render_markdown("![dot](data:image/png;base64,iVBORw0KGgo=)")
    assert "<img" not in html and "data:" not in html and "dot" in html


def test_raw_html_and_scripts_stay_text() -> None:
    html = render_markdown('<img src="https://tracker.example/p.png"> <script>alert(1)</script> [x](javascript:alert(1))')
    assert "<img" not in html and "<script" not in html and "href=\"javascript" not in html
