"""Single-file checkpoints load offline; the bundled SD 1.5 / SDXL configs are the real ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from inference.convert import unet_to_ldm, vae_to_ldm, _fill_upsample_slots
from inference.models import BUNDLED_CONFIGS, ModelRegistry, family_from_checkpoint_keys
from inference.pipelines import generate, load_model
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO, SINGLE


@pytest.mark.timeout(60)
def test_single_file_loads_offline_and_matches_the_folder(registry: ModelRegistry) -> None:
    spec = registry.get(SINGLE)
    assert spec.layout == "single_file" and spec.family == "sd1"
    with safe_open(str(spec.path), framework="pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in keys)
    assert any(k.startswith("first_stage_model.encoder.down.") for k in keys)
    single, folder = load_model(spec), load_model(registry.get(DEMO))
    request = GenerationRequest(model=SINGLE, prompt="a cat", steps=3, width=64, height=64, seed=3).with_seed()
    a = np.array(generate(single, request, device="cpu").images[0])
    b = np.array(generate(folder, request, device="cpu").images[0])
    assert np.array_equal(a, b)


def test_ldm_export_inverts_diffusers_conversion(registry: ModelRegistry) -> None:
    loaded = load_model(registry.get(DEMO))
    unet, vae = loaded.txt2img.unet, loaded.txt2img.vae
    ldm = {"model.diffusion_model." + k: v for k, v in _fill_upsample_slots(unet_to_ldm(unet.state_dict(), unet.config)).items()}
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert set(back) == set(unet.state_dict())
    ldm_vae = {"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()}
    back_vae = convert_ldm_vae_checkpoint(ldm_vae, dict(vae.config))
    assert set(back_vae) == set(vae.state_dict())
    assert all(torch.equal(back_vae[k].reshape(v.shape), v) for k, v in vae.state_dict().items())


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.ckpt").write_bytes(b"not even opened")
    registry = ModelRegistry(tmp_path)
    assert "evil" not in registry.names()
    assert "pickle" in registry.refused["evil.ckpt"]


def test_family_detection_from_keys() -> None:
    assert family_from_checkpoint_keys({"conditioner.embedders.1.model.ln_final.weight"}) == "sdxl"
    assert family_from_checkpoint_keys({"cond_stage_model.model.ln_final.weight"}) == "sd2"
    assert family_from_checkpoint_keys({"cond_stage_model.transformer.text_model.final_layer_norm.weight"}) == "sd1"


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("family", "unet_params"),
    [("sd15", 859_520_964), ("sdxl", 2_567_463_684)],
)
def test_bundled_configs_build_the_published_architectures(family: str, unet_params: int) -> None:
    folder = BUNDLED_CONFIGS / family
    with init_empty_weights():  # meta tensors: the shapes without the memory
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder), subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder), subfolder="vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder), subfolder="text_encoder"))
    assert params(unet) == unet_params
    assert params(vae) == 83_653_863
    assert params(text) == 123_060_480
    if family == "sdxl":
        with init_empty_weights():
            text2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(folder), subfolder="text_encoder_2"))
        assert params(text2) == 694_659_840
    index = json.loads((folder / "model_index.json").read_text())
    components = {name: value for name, value in index.items() if isinstance(value, list)}
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(components)
    for name, (library, _) in components.items():
        if library is not None:
            assert (folder / name).is_dir(), name


@pytest.mark.parametrize("folder", ["sd15/tokenizer", "sdxl/tokenizer", "sdxl/tokenizer_2"])
def test_bundled_tokenizers_are_the_real_clip_vocabulary(folder: str) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(str(BUNDLED_CONFIGS / folder), local_files_only=True)
    assert len(tokenizer) == 49_408 and tokenizer.model_max_length == 77
    # ids every SD user's embeddings were trained with
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
