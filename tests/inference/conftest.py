"""Fixtures for the inference tests: the tiny demo model (and ControlNets), built once per session, on the CPU."""

from __future__ import annotations

import os

# Nothing may come from a hub: make any accidental download fail loudly instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import AsyncIterator  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPTextModelWithProjection  # noqa: E402

from inference.demo_model import (  # noqa: E402
    DEMO_CONTROLNET_NAME,
    build_demo_controlnet,
    build_demo_model,
    build_tiny_pipeline,
    controlnet_from_unet,
    export_controlnet_single_file,
    export_single_file,
)
from inference.engine import Engine, EngineConfig  # noqa: E402
from inference.models import CONTROLNET_FOLDER, ModelRegistry  # noqa: E402

DEMO = "demo-tiny"
EXTRA_MODELS = ("demo-b", "demo-c", "demo-d")  # copies, for switching between more models than fit
SINGLE = "demo-single"
CONTROL = DEMO_CONTROLNET_NAME  # the tiny ControlNet (a diffusers folder), family sd1 like DEMO
CONTROL_SINGLE = "demo-control-single"  # the same weights as one original-layout file + config sidecar
CONTROL_SD2 = "demo-control-sd2"  # a ControlNet whose config says SD 2.x (1024-wide cross-attention)
TINY_XL = "tiny-xl"  # a tiny SDXL pipeline (two text encoders, size embedding)
CONTROL_XL = "tiny-xl-control"  # a ControlNet made from its UNet


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_demo_model(root / DEMO)
    for name in EXTRA_MODELS:
        shutil.copytree(root / DEMO, root / name)
    export_single_file(root / DEMO, root / f"{SINGLE}.safetensors")
    controlnets = root / CONTROLNET_FOLDER
    build_demo_controlnet(controlnets / CONTROL)
    export_controlnet_single_file(controlnets / CONTROL, controlnets / f"{CONTROL_SINGLE}.safetensors")
    shutil.copytree(controlnets / CONTROL, controlnets / CONTROL_SD2)
    config = json.loads((controlnets / CONTROL_SD2 / "config.json").read_text())
    (controlnets / CONTROL_SD2 / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 1024}))
    build_tiny_sdxl(root / TINY_XL, controlnets / CONTROL_XL, root / "xl-tokenizer")
    return root


def build_tiny_sdxl(folder: Path, controlnet_folder: Path, scratch: Path) -> None:
    """A tiny SDXL pipeline (diffusers' own test shapes) and a ControlNet of its UNet, random weights."""
    sd = build_tiny_pipeline(scratch)  # its tokenizer, VAE and first text encoder serve SDXL's too
    torch.manual_seed(5)
    text_encoder_2 = CLIPTextModelWithProjection(sd.text_encoder.config)
    width = sd.text_encoder.config.hidden_size + text_encoder_2.config.hidden_size  # both encoders, concatenated
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim, transformer_layers_per_block=(1, 1), norm_num_groups=8,
        # six size numbers (original size, crop, target size), each embedded, plus the pooled text
        projection_class_embeddings_input_dim=6 * time_embed_dim + text_encoder_2.config.projection_dim,
        cross_attention_dim=width,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=sd.vae, text_encoder=sd.text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=sd.tokenizer, tokenizer_2=sd.tokenizer, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    controlnet_from_unet(unet, seed=5).save_pretrained(str(controlnet_folder), safe_serialization=True)


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
