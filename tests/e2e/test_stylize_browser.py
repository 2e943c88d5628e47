"""The Stylize page in Chromium, on a phone (390×844) and a desktop, against a server with the demo model,
its ControlNet and the demo preset (what `run.py demo-model` makes)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME
from inference.models import CONTROLNET_FOLDER
from server.presets import demo_preset_values
from tests.conftest import make_settings
from tests.e2e.conftest import require_browser
from tests.support.server import running_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def stylize_server(embedded_backend, tmp_path: Path, demo_models_dir: Path) -> AsyncIterator[str]:
    require_browser()
    models = tmp_path / "data" / "models"
    (models / CONTROLNET_FOLDER).mkdir(parents=True)
    (models / DEMO_MODEL_NAME).symlink_to(demo_models_dir / DEMO_MODEL_NAME, target_is_directory=True)
    (models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME).symlink_to(
        demo_models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, target_is_directory=True)
    async with running_server(make_settings(embedded_backend, tmp_path / "data", preview_fps=0)) as (url, runtime):
        await runtime.presets.ensure(demo_preset_values(DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME))
        yield url


async def test_stylize_on_a_phone_and_a_desktop_share_link_and_publish(stylize_server, run_e2e):
    output = await run_e2e("stylize.e2e.mjs", stylize_server)
    print(output)
    assert output.rstrip().lower().endswith("pass"), output
