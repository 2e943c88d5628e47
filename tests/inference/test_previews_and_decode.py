"""Preview pieces and the half-precision VAE overflow fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, PNDMScheduler

from inference.models import ModelRegistry
from inference.pipelines import decode_latents, load_model
from inference.previews import LinearPreviewer, PreviewThrottle, X0Tap, encode_frame
from tests.inference.conftest import DEMO


def test_throttle_drops_intermediate_frames_but_never_the_last() -> None:
    throttle = PreviewThrottle(fps=2)  # one frame per 0.5 s
    admitted = [throttle.admit(step, 10, now=step * 0.1) for step in range(1, 11)]
    assert admitted == [True, False, False, False, False, True, False, False, False, True]
    assert throttle.dropped == 7


def test_linear_preview_is_small_rgb() -> None:
    latents = torch.randn(2, 4, 8, 12)
    rgb = LinearPreviewer("sdxl")(latents)
    assert rgb.shape == (8, 12, 3) and rgb.dtype == np.uint8
    data = encode_frame(rgb, 96, "jpeg")
    assert data[:2] == b"\xff\xd8"


def test_x0_tap_prefers_the_predicted_clean_sample() -> None:
    scheduler = EulerAncestralDiscreteScheduler()
    scheduler.set_timesteps(4)
    tap = X0Tap(scheduler)
    sample = torch.randn(1, 4, 8, 8)
    out = scheduler.step(torch.randn_like(sample), scheduler.timesteps[0], sample,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(tap.take(sample), out.pred_original_sample)
    assert tap.take(sample) is sample  # nothing new: falls back to the latents
    pndm = PNDMScheduler(skip_prk_steps=True)
    pndm.set_timesteps(4)
    plain = X0Tap(pndm)
    pndm.step(torch.randn_like(sample), pndm.timesteps[0], sample)
    assert plain.take(sample) is sample  # PNDM predicts no x0


@pytest.mark.timeout(60)
def test_float16_vae_overflow_is_decoded_again_in_float32(registry: ModelRegistry) -> None:
    vae = load_model(registry.get(DEMO)).txt2img.vae
    latents = torch.full((1, 4, 8, 8), 3e4)  # overflows float16 inside the decoder
    vae.to(torch.float16)
    image, upcast = decode_latents(vae, latents)
    assert upcast
    assert torch.isfinite(image).all()
    assert vae.dtype == torch.float16  # back at the precision the cache accounted for
    vae.to(torch.float32)
    image32, upcast32 = decode_latents(vae, latents)
    assert not upcast32 and torch.allclose(image, image32)
