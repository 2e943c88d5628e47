"""ControlNets on disk: found in `controlnets/`, their family told from config or tensor shapes, configs bundled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from accelerate import init_empty_weights
from diffusers import ControlNetModel, UNet2DConditionModel
from safetensors.numpy import save_file

from inference.errors import ModelLoadError
from inference.models import BUNDLED_CONFIGS, CONTROLNET_FOLDER, ModelRegistry
from inference.pipelines import load_controlnet
from tests.inference.conftest import CONTROL, CONTROL_SD2, CONTROL_SINGLE, CONTROL_XL, DEMO, TINY_XL


def test_the_registry_lists_controlnets_apart_from_checkpoints(registry: ModelRegistry) -> None:
    assert registry.controlnet_families() == {CONTROL: "sd1", CONTROL_SINGLE: "sd1", CONTROL_SD2: "sd2",
                                              CONTROL_XL: "sdxl"}
    assert not set(registry.controlnet_families()) & registry.names()
    assert {DEMO, TINY_XL} <= registry.names()
    single = registry.controlnet(CONTROL_SINGLE)
    assert single.layout == "single_file" and single.config_dir == single.path.with_name(f"{CONTROL_SINGLE}.config")
    with pytest.raises(ModelLoadError, match="no-such"):
        registry.controlnet("no-such")


def fake_controlnet(path: Path, **tensors: tuple[int, ...]) -> Path:
    names = {"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), **{k.replace("__", "."): v
                                                                           for k, v in tensors.items()}}
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in names.items()}, str(path))
    return path


def test_a_single_file_family_comes_from_its_shapes_and_picks_a_bundled_config(tmp_path: Path) -> None:
    folder = tmp_path / CONTROLNET_FOLDER
    folder.mkdir()
    attention = "down_blocks__1__attentions__0__transformer_blocks__0__attn2__to_k__weight"
    fake_controlnet(folder / "sd15-canny.safetensors", **{attention: (320, 768)},
                    controlnet_cond_embedding__conv_out__weight=(320, 256, 3, 3))
    fake_controlnet(folder / "narrow-canny.safetensors", **{attention: (32, 768)},
                    controlnet_cond_embedding__conv_out__weight=(32, 16, 3, 3))
    fake_controlnet(folder / "xl-canny.safetensors", add_embedding__linear_1__weight=(1280, 2816))
    fake_controlnet(folder / "sd21-canny.safetensors", **{attention: (320, 1024)})
    save_file({"model.diffusion_model.x": np.zeros(2, np.float16)}, str(folder / "not-a-controlnet.safetensors"))
    (folder / "old.pth").write_bytes(b"\x80\x04pickle")
    registry = ModelRegistry(tmp_path)
    assert registry.controlnet_families() == {"sd15-canny": "sd1", "xl-canny": "sdxl"}
    assert registry.controlnet("sd15-canny").config_dir == BUNDLED_CONFIGS / "controlnet-sd15"
    assert registry.controlnet("xl-canny").config_dir == BUNDLED_CONFIGS / "controlnet-sdxl"
    assert "sd21-canny.config" in registry.refused[f"{CONTROLNET_FOLDER}/sd21-canny.safetensors"]
    # A non-standard width is told from the header, not met as a shape error when a job loads it.
    narrow = registry.refused[f"{CONTROLNET_FOLDER}/narrow-canny.safetensors"]
    assert "32 wide" in narrow and "narrow-canny.config" in narrow
    assert "not a ControlNet" in registry.refused[f"{CONTROLNET_FOLDER}/not-a-controlnet.safetensors"]
    assert "pickle" in registry.refused[f"{CONTROLNET_FOLDER}/old.pth"]
    # An SD 2.x file loads with its config beside it, as any non-standard one does.
    (folder / "sd21-canny.config").mkdir()
    (folder / "sd21-canny.config" / "config.json").write_text("{}")
    registry.refresh()
    assert registry.controlnet_families()["sd21-canny"] == "sd2"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_bundled_controlnet_configs_are_what_from_unet_makes_of_the_bundled_unets(family: str) -> None:
    unet_config = UNet2DConditionModel.load_config(str(BUNDLED_CONFIGS / family), subfolder="unet")
    with init_empty_weights():  # the architecture only: no memory for the weights
        derived = ControlNetModel.from_unet(UNet2DConditionModel.from_config(unet_config), load_weights_from_unet=False)
    bundled = json.loads((BUNDLED_CONFIGS / f"controlnet-{family}" / "config.json").read_text())
    assert {k: v for k, v in bundled.items() if not k.startswith("_")} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in dict(derived.config).items() if not k.startswith("_")}


def test_a_broken_controlnet_fails_to_load_with_its_name(tmp_path: Path, registry: ModelRegistry) -> None:
    folder = tmp_path / CONTROLNET_FOLDER / "broken"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text((registry.controlnet(CONTROL).path / "config.json").read_text())
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    spec = ModelRegistry(tmp_path).controlnet("broken")
    with pytest.raises(ModelLoadError, match="broken"):
        load_controlnet(spec)
