"""A collaborative session in two Chromium contexts against a server with the tiny demo model."""

from __future__ import annotations


import pytest


pytestmark = pytest.mark.browser


async def test_two_people_type_together_render_and_restore(demo_server, run_e2e):
    base_url, _runtime = demo_server
    output = await run_e2e("collab.e2e.mjs", base_url)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output
