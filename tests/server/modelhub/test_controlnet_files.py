"""ControlNet files in the hub: detected as such with their base, and linked where the engine finds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save
from safetensors.torch import save as save_torch

from inference.convert import controlnet_to_ldm
from inference.demo_model import tiny_controlnet
from inference.models import CONTROLNET_FOLDER, LORA_FOLDER, ModelRegistry
from server.modelhub.publish import ModelLinks
from server.modelhub.safetensors_check import check_file
from tests.support.safetensors_files import tiny_lora

ATTN2 = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
LDM_ATTN2 = "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def header_only(tensors: dict[str, tuple[int, ...]]) -> bytes:
    return save({name: np.zeros(shape, dtype=np.float16) for name, shape in tensors.items()})


@pytest.fixture(scope="module")
def tiny() -> dict[str, bytes]:
    """The demo's tiny ControlNet as one file, in the diffusers layout and in the original one."""
    controlnet = tiny_controlnet()
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    return {"diffusers": save_torch(state), "original": save_torch(controlnet_to_ldm(state, controlnet.config))}


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_a_real_controlnet_file_is_detected_as_such(tmp_path: Path, tiny: dict[str, bytes], layout: str) -> None:
    path = tmp_path / "control.safetensors"
    path.write_bytes(tiny[layout])
    checked = check_file(path)
    assert checked.kind == "controlnet"  # not a checkpoint, though it has a UNet's time embedding and blocks
    assert checked.base == ""  # its 32-wide cross-attention is none of SD's


@pytest.mark.parametrize("tensors, base", [
    ({"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), ATTN2: (320, 768)}, "sd1"),
    ({"control_model.input_hint_block.0.weight": (16, 3, 3, 3), LDM_ATTN2: (320, 1024)}, "sd2"),
    ({"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), "add_embedding.linear_1.weight": (1280, 2816),
      ATTN2: (640, 2048)}, "sdxl"),
    # an SDXL ControlNet with no cross-attention in its first blocks still carries the size embedding
    ({"control_model.input_hint_block.0.weight": (16, 3, 3, 3), "control_model.label_emb.0.0.weight": (1280, 2816),
      "control_model.zero_convs.0.0.weight": (320, 320, 1, 1)}, "sdxl"),
])
def test_a_controlnet_base_comes_from_its_shapes(tmp_path: Path, tensors: dict, base: str) -> None:
    path = tmp_path / "control.safetensors"
    path.write_bytes(header_only(tensors))
    checked = check_file(path)
    assert (checked.kind, checked.base) == ("controlnet", base)


def test_a_published_controlnet_is_in_the_engines_list_until_unlinked(tmp_path: Path, tiny: dict[str, bytes]) -> None:
    blobs, models = tmp_path / "blobs", tmp_path / "models"
    blobs.mkdir()
    (blobs / "cn").write_bytes(header_only({"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
                                            ATTN2: (320, 768)}))
    (blobs / "lora").write_bytes(tiny_lora())
    links = ModelLinks(models)
    links.link("alice--canny--v1--canny", "controlnet", blobs / "cn")
    links.link("alice--ink--v1--ink", "lora", blobs / "lora")
    link = models / CONTROLNET_FOLDER / "alice--canny--v1--canny.safetensors"
    assert link.is_symlink() and link.resolve() == (blobs / "cn").resolve()  # a link, not a copy
    registry = ModelRegistry(models)
    assert registry.controlnet_families() == {"alice--canny--v1--canny": "sd1"}
    assert registry.lora_names() == {"alice--ink--v1--ink"} and (models / LORA_FOLDER).is_dir()
    assert registry.names() == frozenset()  # neither is a checkpoint
    links.unlink("alice--canny--v1--canny", "controlnet")
    registry.refresh()
    assert registry.controlnet_families() == {} and not link.exists()
