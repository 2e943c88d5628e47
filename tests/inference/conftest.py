"""Fixtures for the inference tests: the tiny demo model, built once per session, on the CPU."""

from __future__ import annotations

import os

# Nothing may come from a hub: make any accidental download fail loudly instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import io  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import AsyncIterator  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from inference.demo_model import build_demo_model, export_single_file  # noqa: E402
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import ModelRegistry  # noqa: E402

DEMO = "demo-tiny"
EXTRA_MODELS = ("demo-b", "demo-c", "demo-d")  # copies, for switching between more models than fit
SINGLE = "demo-single"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_demo_model(root / DEMO)
    for name in EXTRA_MODELS:
        shutil.copytree(root / DEMO, root / name)
    export_single_file(root / DEMO, root / f"{SINGLE}.safetensors")
    return root


@pytest.fixture
def registry(models_dir: Path) -> ModelRegistry:
    return ModelRegistry(models_dir)


@pytest.fixture
async def engine(registry: ModelRegistry) -> AsyncIterator[Engine]:
    eng = Engine(registry, EngineConfig(preview_fps=0)).start()
    yield eng
    await eng.aclose()


def png_bytes(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()
