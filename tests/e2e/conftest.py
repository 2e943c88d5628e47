"""Browser tests: a real server (embedded mode) and Node scripts driving Debian's Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME, build_demo_model
from inference.models import CONTROLNET_FOLDER
from server.presets import demo_preset_values
from server.runtime import Runtime
from tests.conftest import make_settings
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = ROOT / "frontend" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCRIPT_TIMEOUT_SECS = 120


def require_browser() -> None:
    if not (ROOT / "frontend" / "dist" / "index.html").exists():
        pytest.fail("frontend/dist is not built: run `make test` (it runs `npm run build`)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")


@pytest.fixture
async def browser_server(embedded_backend, tmp_path) -> AsyncIterator[str]:
    require_browser()
    async with running_server(make_settings(embedded_backend, tmp_path / "data")) as (base_url, _runtime):
        yield base_url


@pytest.fixture
async def demo_server(embedded_backend, tmp_path) -> AsyncIterator[tuple[str, Runtime]]:
    """A server with `demo-tiny` in its data dir (pages generate 64×64 images in a few steps); every
    step's preview is sent (no frame-rate cap), so what a page sees does not depend on this machine's speed."""
    require_browser()
    data = tmp_path / "data"
    await asyncio.to_thread(build_demo_model, data / "models" / DEMO_MODEL_NAME)
    async with running_server(make_settings(embedded_backend, data, preview_fps=0)) as started:
        yield started


@asynccontextmanager
async def stylize_demo_server(backend: Any, data: Path, demo_models_dir: Path, **preset: Any) -> AsyncIterator[str]:
    """A server with the demo model, its ControlNet and the demo style preset (``preset`` overrides its
    values), every preview sent; yields its URL."""
    require_browser()
    models = data / "models"
    (models / CONTROLNET_FOLDER).mkdir(parents=True)
    (models / DEMO_MODEL_NAME).symlink_to(demo_models_dir / DEMO_MODEL_NAME, target_is_directory=True)
    (models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME).symlink_to(
        demo_models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, target_is_directory=True)
    async with running_server(make_settings(backend, data, preview_fps=0)) as (url, runtime):
        await runtime.presets.ensure({**demo_preset_values(DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME), **preset})
        yield url


@pytest.fixture
def run_e2e(tmp_path):
    """Runs one `frontend/e2e/*.e2e.mjs` script against a server; fails with its output."""

    async def run(script: str, base_url: str, **env: str) -> str:
        node = shutil.which("node")
        assert node, "node is not installed"
        artifacts = Path(os.environ.get("VA_E2E_ARTIFACTS", tmp_path / "artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            node, str(E2E_DIR / script),
            env={**os.environ, "VA_BASE_URL": base_url, "CHROMIUM": CHROMIUM,
                 "VA_E2E_ARTIFACTS": str(artifacts), **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT / "frontend",
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_SECS)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"{script} ran past {SCRIPT_TIMEOUT_SECS} s")
        text = output.decode(errors="replace")
        assert process.returncode == 0, f"{script} failed (screenshots in {artifacts}):\n{text}"
        return text

    return run
