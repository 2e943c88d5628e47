"""A collaborative session in two Chromium contexts against a server with the tiny demo model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from inference.demo_model import DEMO_MODEL_NAME, build_demo_model
from tests.conftest import make_settings
from tests.e2e.conftest import CHROMIUM, ROOT
from tests.support.server import running_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def collab_server(embedded_backend, tmp_path) -> AsyncIterator[str]:
    """The demo model in the data dir and every preview sent, so both pages see frames however fast the machine."""
    if not (ROOT / "frontend" / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is not built: run `make test` (it runs `npm run build`)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    data = tmp_path / "data"
    await asyncio.to_thread(build_demo_model, data / "models" / DEMO_MODEL_NAME)
    async with running_server(make_settings(embedded_backend, data, preview_fps=0)) as (base_url, _runtime):
        yield base_url


async def test_two_people_type_together_render_and_restore(collab_server, run_e2e):
    output = await run_e2e("collab.e2e.mjs", collab_server)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output
