"""The header checker refuses every malformed file with a precise reason and reads good ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from server.modelhub.errors import InvalidModelFile, PickleRefused
from server.modelhub.safetensors_check import check_file, refuse_by_name
from tests.support.safetensors_files import bad_files, small_model, tiny_lora

BAD = bad_files()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_refused_with_their_reason(tmp_path: Path, name: str) -> None:
    data, code = BAD[name]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises((InvalidModelFile, PickleRefused)) as caught:
        check_file(path)
    assert caught.value.code == code, caught.value.message
    assert len(caught.value.message) > 15


def test_pickle_suffixes_are_refused_by_name_with_a_conversion_hint() -> None:
    for name in ("model.ckpt", "x.PT", "weights.bin", "a.pth"):
        with pytest.raises(PickleRefused) as caught:
            refuse_by_name(name)
        assert "save_file" in caught.value.message
    with pytest.raises(InvalidModelFile):
        refuse_by_name("notes.txt")
    refuse_by_name("ok.safetensors")


def test_a_lora_is_detected_with_its_base_and_metadata_is_sanitised(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    path.write_bytes(tiny_lora(context=768))
    checked = check_file(path)
    assert (checked.kind, checked.base) == ("lora", "sd1")
    assert checked.metadata["ss_network_dim"] == "2"
    assert "\x1b" not in checked.metadata["note"] and "\u202e" not in checked.metadata["note"]
    path.write_bytes(tiny_lora(context=2048))
    assert check_file(path).base == "sdxl"


@pytest.mark.parametrize("tensors, kind, base", [
    ({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)},
     "checkpoint", "sd1"),
    ({"model.diffusion_model.x.attn2.to_k.weight": (320, 1024)}, "checkpoint", "sd2"),
    ({"model.diffusion_model.label_emb.0.0.weight": (4, 4), "conditioner.embedders.1.model.ln": (4,)},
     "checkpoint", "sdxl"),
    ({"control_model.input_hint_block.0.weight": (16, 3), "control_model.x.attn2.to_k.weight": (320, 768)},
     "controlnet", "sd1"),
    ({"encoder.conv_in.weight": (4, 3), "decoder.conv_in.weight": (4, 4)}, "vae", ""),
    ({"emb_params": (2, 768)}, "embedding", "sd1"),
    ({"clip_l": (2, 768), "clip_g": (2, 1280)}, "embedding", "sdxl"),
])
def test_kind_and_base_come_from_names_and_shapes(tmp_path: Path, tensors: dict, kind: str, base: str) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(save({name: np.zeros(shape, dtype=np.float16) for name, shape in tensors.items()}))
    checked = check_file(path)
    assert (checked.kind, checked.base) == (kind, base)


def test_a_good_file_reports_its_tensors(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(small_model(4096))
    checked = check_file(path)
    assert checked.size_bytes == path.stat().st_size and len(checked.tensors) == 1
