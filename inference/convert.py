"""Write a diffusers SD 1.x pipeline (or a ControlNet) back out as one original-layout (LDM) checkpoint.

This is the inverse of diffusers' `convert_ldm_*_checkpoint` functions, written from
the block arithmetic those functions use (so it works for any block count, the tiny
demo model's included). It exists so that the single-file loading path can be tested
end to end on a model made here, with no download.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
CONTROLNET_PREFIX = "control_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_RESNET_PARTS = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
_VAE_ATTENTION_PARTS = [
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
]


def _resnet_inner(rest: str) -> str:
    for new, old in _RESNET_PARTS:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel keys -> `input_blocks` / `middle_block` / `output_blocks` keys."""
    layers = int(config["layers_per_block"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _unet_key(key, layers)
        if new is None:
            raise ValueError(f"no LDM name for UNet key {key!r}")
        out[new] = value
    return out


def _unet_key(key: str, layers: int) -> str | None:
    for prefix, ldm in _UNET_FIXED.items():
        if key.startswith(prefix):
            return ldm + key[len(prefix) :]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.* -> input_blocks.i.0.op.*
            index = 1 + block * (layers + 1) + layers
            return f"input_blocks.{index}.0.op." + ".".join(parts[5:])
        layer, rest = int(parts[3]), ".".join(parts[4:])
        index = 1 + block * (layers + 1) + layer
        if kind == "resnets":
            return f"input_blocks.{index}.0." + _resnet_inner(rest)
        if kind == "attentions":
            return f"input_blocks.{index}.1." + rest
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # lives in the block's last layer, after its attention if any
            index = block * (layers + 1) + layers
            return f"output_blocks.{index}.{{upsample_slot}}." + ".".join(parts[4:])
        layer, rest = int(parts[3]), ".".join(parts[4:])
        index = block * (layers + 1) + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0." + _resnet_inner(rest)
        if kind == "attentions":
            return f"output_blocks.{index}.1." + rest
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * index}." + _resnet_inner(rest)
        if kind == "attentions":
            return "middle_block.1." + rest
    return None


def _fill_upsample_slots(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # An up block's upsampler is output_blocks.i.1 when that layer has no attention, else .2.
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "{upsample_slot}" in key:
            head = key.split("{upsample_slot}")[0]  # "output_blocks.i."
            has_attention = any(k.startswith(head + "1.") and "{" not in k for k in state)
            key = key.replace("{upsample_slot}", "2" if has_attention else "1")
        out[key] = value
    return out


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """AutoencoderKL keys -> `encoder.down.i.block.j` / `decoder.up.i` keys (up blocks reversed)."""
    num_up = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        new = key
        if parts[1] == "down_blocks":
            i = parts[2]
            if parts[3] == "resnets":
                new = f"{parts[0]}.down.{i}.block.{parts[4]}." + ".".join(parts[5:])
            else:  # downsamplers.0.conv.*
                new = f"{parts[0]}.down.{i}.downsample." + ".".join(parts[5:])
        elif parts[1] == "up_blocks":
            i = num_up - 1 - int(parts[2])
            if parts[3] == "resnets":
                new = f"{parts[0]}.up.{i}.block.{parts[4]}." + ".".join(parts[5:])
            else:
                new = f"{parts[0]}.up.{i}.upsample." + ".".join(parts[5:])
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
            else:
                rest = ".".join(parts[4:]) + ""
                for diffusers_part, ldm_part in _VAE_ATTENTION_PARTS:
                    if rest.startswith(diffusers_part):
                        rest = ldm_part + rest[len(diffusers_part) :]
                        break
                new = f"{parts[0]}.mid.attn_1." + rest
                if value.ndim == 2:  # LDM stores the attention projections as 1x1 convolutions
                    value = value[:, :, None, None]
        elif parts[0] in ("encoder", "decoder") and parts[1] == "conv_norm_out":
            new = f"{parts[0]}.norm_out." + ".".join(parts[2:])
        new = new.replace("conv_shortcut", "nin_shortcut")
        out[new] = value
    return out


def clip_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel keys -> `cond_stage_model.transformer.text_model.*` (SD 1.x layout)."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        name = key if key.startswith("text_model.") else "text_model." + key
        out[CLIP_PREFIX + name] = value
    return out


def pipeline_to_ldm_checkpoint(pipe: Any) -> dict[str, torch.Tensor]:
    """One flat LDM state dict from an SD 1.x diffusers pipeline (UNet, VAE, text encoder)."""
    checkpoint: dict[str, torch.Tensor] = {}
    unet = _fill_upsample_slots(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    checkpoint.update({UNET_PREFIX + k: v for k, v in unet.items()})
    checkpoint.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config).items()})
    checkpoint.update(clip_to_ldm(pipe.text_encoder.state_dict()))
    return {k: v.detach().contiguous() for k, v in checkpoint.items()}


def controlnet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """ControlNetModel keys -> the original `control_model.*` layout (hint block, zero convs, UNet encoder)."""
    layers = int(config["layers_per_block"])
    hint_blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "controlnet_cond_embedding":
            # conv_in, SiLU, (conv, SiLU) x blocks, conv_out: only the convolutions hold weights.
            if parts[1] == "conv_in":
                index = 0
            elif parts[1] == "conv_out":
                index = 2 * (hint_blocks + 1)
            else:
                index = 2 * (int(parts[2]) + 1)
            new: str | None = f"input_hint_block.{index}." + parts[-1]
        elif parts[0] == "controlnet_down_blocks":
            new = f"zero_convs.{parts[1]}.0." + parts[-1]
        elif parts[0] == "controlnet_mid_block":
            new = "middle_block_out.0." + parts[-1]
        else:
            new = _unet_key(key, layers)
        if new is None:
            raise ValueError(f"no LDM name for ControlNet key {key!r}")
        out[CONTROLNET_PREFIX + new] = value.detach().contiguous()
    return out
