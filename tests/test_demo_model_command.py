"""`run.py demo-model` (what `make run` calls on a fresh machine): the tiny model, its ControlNet and a preset
using both, built once; run again, it adds only what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config import Settings
from server.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]


def demo_model(data_dir: Path) -> str:
    result = subprocess.run([sys.executable, "run.py", "demo-model"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "VA_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    return result.stderr


async def test_demo_model_builds_the_model_its_controlnet_and_a_preset_using_them(tmp_path):
    log = demo_model(tmp_path)
    assert (tmp_path / "models" / "demo-tiny" / "model_index.json").exists()
    assert (tmp_path / "models" / "controlnets" / "demo-tiny-control" / "config.json").exists()
    assert "style preset 'demo-lines' created" in log
    runtime = await Runtime.start(Settings(data_dir=tmp_path, inference_enabled=False))
    try:
        [preset] = await runtime.presets.list(None)
    finally:
        await runtime.close()
    assert preset["name"] == "demo-lines" and preset["available"] is True
    assert preset["checkpoint"] == "demo-tiny" and preset["controls"][0]["model"] == "demo-tiny-control"
    again = demo_model(tmp_path)
    assert "already exists" in again and "style preset 'demo-lines' already exists" in again
