"""The Generate page in Chromium against a server whose engine has the tiny demo model."""

from __future__ import annotations


import pytest


pytestmark = pytest.mark.browser


async def test_generate_live_previews_download_cancel_queue_and_reload(demo_server, run_e2e):
    base_url, _runtime = demo_server
    output = await run_e2e("generate.e2e.mjs", base_url)
    print(output)  # the steps and their timings, shown with -s or -rP
    assert output.rstrip().lower().endswith("pass"), output
