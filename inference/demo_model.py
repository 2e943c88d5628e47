"""A tiny Stable Diffusion 1.x pipeline with random weights, built from configs offline.

`python run.py demo-model` writes it to `data/models/demo-tiny/` so a fresh machine can
run the whole generation path (text encoder, UNet, scheduler, VAE, previews) in seconds
on a CPU. Its images are noise; every line of code they pass through is the real one.
`build_demo_controlnet` adds a tiny ControlNet of the same UNet architecture (random
weights too) under `controlnets/`, so the ControlNet path runs the same way.
The architecture keeps SD's shape where the code depends on it: 4 latent channels, a
VAE that downsamples by 8, CLIP-style BPE tokenizer with 77 positions.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from inference.configs.build_clip_tokenizer import bytes_to_unicode, write_tokenizer
from inference.construction import construction_lock
from inference.convert import controlnet_to_ldm, pipeline_to_ldm_checkpoint
from inference.models import CONTROLNET_FOLDER, SIDECAR_SUFFIX

DEMO_MODEL_NAME = "demo-tiny"
DEMO_CONTROLNET_NAME = "demo-tiny-control"
DEMO_SEED = 1234
# A trained ControlNet's output convolutions start at zero and learn; random ones must not be
# zero, or the control image would change nothing. This spread keeps the tiny UNet's
# activations finite while moving the result visibly.
DEMO_CONTROLNET_OUTPUT_STD = 0.1
# The hint encoder with torch's default init forgets its input (eight small convolutions deep,
# its output is its last bias); He-normal keeps the image's pattern, and this gain on the last
# convolution brings it to the size of the latent features it is added to.
DEMO_HINT_OUTPUT_GAIN = 10.0
DEMO_MERGES = 200
# A small English corpus the demo tokenizer's merges are learned from (any text works;
# these are words people type into prompts, so common prompts tokenize to few ids).
_CORPUS = (
    "a photo of a cat dog bird horse portrait painting of the mountain lake at sunset in the city at night "
    "red blue green golden light soft focus highly detailed digital art oil painting watercolor sketch "
    "landscape forest river ocean beach sky clouds stars moon sun flower garden castle street market "
    "beautiful cute old young woman man child robot dragon fantasy science fiction cinematic lighting "
    "masterpiece best quality trending on artstation unreal engine octane render 4k 8k"
)


def learn_merges(corpus: str, count: int) -> list[tuple[str, str]]:
    """Plain byte-level BPE training over `corpus` (most frequent adjacent pair first)."""
    table = bytes_to_unicode()
    words = Counter(corpus.lower().split())
    splits = {}
    for word in words:
        symbols = [table[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        splits[word] = symbols
    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, symbols in splits.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        # Ties broken by the pair itself, so the result never depends on dict order.
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        for word, symbols in splits.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            splits[word] = merged
    return merges


def build_tiny_pipeline(folder_for_tokenizer: Path, seed: int = DEMO_SEED) -> StableDiffusionPipeline:
    """Random-weight tiny components; the tokenizer files are written to `folder_for_tokenizer`."""
    write_tokenizer(folder_for_tokenizer, learn_merges(_CORPUS, DEMO_MERGES))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder_for_tokenizer), local_files_only=True)
    torch.manual_seed(seed)
    unet = tiny_unet()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),  # four blocks: downsample by 8 like SD's VAE
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=32,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_unet() -> UNet2DConditionModel:
    """The demo's UNet (random weights from torch's current seed): SD's shape, a few MB."""
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def tiny_controlnet(seed: int = DEMO_SEED) -> ControlNetModel:
    """A ControlNet made from the demo UNet (the same weights as the demo model's), with random outputs."""
    torch.manual_seed(seed)
    return controlnet_from_unet(tiny_unet(), seed)


def controlnet_from_unet(unet: UNet2DConditionModel, seed: int = DEMO_SEED) -> ControlNetModel:
    """A ControlNet of `unet`'s architecture and encoder weights, its zero convolutions made random."""
    controlnet = ControlNetModel.from_unet(unet)
    generator = torch.Generator().manual_seed(seed + 1)
    hint = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        for conv in hint.modules():
            if isinstance(conv, torch.nn.Conv2d):
                fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
                gain = DEMO_HINT_OUTPUT_GAIN if conv is hint.conv_out else 1.0
                conv.weight.normal_(0.0, gain * (2.0 / fan_in) ** 0.5, generator=generator)
                conv.bias.zero_()
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0.0, DEMO_CONTROLNET_OUTPUT_STD, generator=generator)
            conv.bias.normal_(0.0, DEMO_CONTROLNET_OUTPUT_STD, generator=generator)
    return controlnet


def build_demo_controlnet(path: str | Path, *, seed: int = DEMO_SEED, overwrite: bool = False) -> Path:
    """Write the tiny ControlNet as a diffusers folder (config.json + safetensors); returns the folder.

    Its place is `<models>/controlnets/<name>/` (`DEMO_CONTROLNET_NAME` by default); it fits
    the demo model (family sd1, the same UNet architecture).
    """
    return _write_folder(path, overwrite, lambda staging: tiny_controlnet(seed).save_pretrained(
        str(staging), safe_serialization=True))


def build_demo_model(path: str | Path, *, seed: int = DEMO_SEED, overwrite: bool = False) -> Path:
    """Write the tiny pipeline as a diffusers folder with safetensors weights; returns the folder."""
    return _write_folder(path, overwrite, lambda staging: build_tiny_pipeline(
        staging / "tokenizer", seed=seed).save_pretrained(str(staging), safe_serialization=True))


def _write_folder(path: str | Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Write a model folder beside its place, then rename it there: a scan never sees half a model."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to rebuild it")
        shutil.rmtree(path)
    staging = path.with_name(path.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    with construction_lock:
        write(staging)
    staging.rename(path)  # appears complete or not at all, so a scan never sees half a model
    return path


def export_single_file(model_dir: str | Path, out_file: str | Path) -> Path:
    """Export a diffusers SD 1.x folder as one LDM-layout `.safetensors` plus its config sidecar.

    The sidecar `<stem>.config/` holds the component configs and tokenizer (no weights),
    which is what `from_single_file(config=...)` needs for a non-standard architecture.
    """
    model_dir, out_file = Path(model_dir), Path(out_file)
    with construction_lock:
        pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), use_safetensors=True, local_files_only=True)
    save_file(pipeline_to_ldm_checkpoint(pipe), str(out_file), metadata={"format": "pt"})
    sidecar = out_file.with_name(out_file.stem + SIDECAR_SUFFIX)
    shutil.rmtree(sidecar, ignore_errors=True)
    sidecar.mkdir(parents=True)
    shutil.copy(model_dir / "model_index.json", sidecar / "model_index.json")
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        target = sidecar / component
        target.mkdir()
        for f in (model_dir / component).iterdir():
            if f.suffix in (".json", ".txt"):
                shutil.copy(f, target / f.name)
    json.loads((sidecar / "model_index.json").read_text())  # fail here, not at load, if it is broken
    return out_file


def export_controlnet_single_file(controlnet_dir: str | Path, out_file: str | Path) -> Path:
    """Export a diffusers ControlNet folder as one original-layout (`control_model.*`) `.safetensors`.

    Its `config.json` goes into the sidecar `<stem>.config/`, as a non-standard architecture needs.
    """
    controlnet_dir, out_file = Path(controlnet_dir), Path(out_file)
    with construction_lock:
        controlnet = ControlNetModel.from_pretrained(str(controlnet_dir), use_safetensors=True, local_files_only=True)
    save_file(controlnet_to_ldm(controlnet.state_dict(), controlnet.config), str(out_file), metadata={"format": "pt"})
    sidecar = out_file.with_name(out_file.stem + SIDECAR_SUFFIX)
    shutil.rmtree(sidecar, ignore_errors=True)
    sidecar.mkdir(parents=True)
    shutil.copy(controlnet_dir / "config.json", sidecar / "config.json")
    return out_file


def main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415 -- only the CLI entry needs it

    parser = argparse.ArgumentParser(description="Build the tiny random-weight demo model.")
    parser.add_argument("--models-dir", default="data/models")
    parser.add_argument("--name", default=DEMO_MODEL_NAME)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    target = Path(args.models_dir) / args.name
    build_demo_model(target, overwrite=args.overwrite)
    controlnet = Path(args.models_dir) / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME
    build_demo_controlnet(controlnet, overwrite=args.overwrite)
    print(f"wrote {target} and {controlnet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
