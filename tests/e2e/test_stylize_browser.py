"""The Stylize page in Chromium, on a phone (390×844) and a desktop, against a server with the demo model,
its ControlNet and the demo preset (what `run.py demo-model` makes)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.e2e.conftest import stylize_demo_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def stylize_server(embedded_backend, tmp_path: Path, demo_models_dir: Path) -> AsyncIterator[str]:
    async with stylize_demo_server(embedded_backend, tmp_path / "data", demo_models_dir) as url:
        yield url


async def test_stylize_on_a_phone_and_a_desktop_share_link_and_publish(stylize_server, run_e2e):
    output = await run_e2e("stylize.e2e.mjs", stylize_server)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output
