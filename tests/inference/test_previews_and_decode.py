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


@pytest.mark.timeout(60)
async def test_taesd_previews_when_its_weights_are_local(models_dir, tmp_path) -> None:
    from diffusers import AutoencoderTiny

    from inference.engine import Engine, EngineConfig
    from inference.events import Preview
    from inference.previews import TaesdPreviewer
    from inference.requests import GenerationRequest

    models = tmp_path / "models"
    models.mkdir()
    (models / DEMO).symlink_to(models_dir / DEMO)
    torch.manual_seed(0)
    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8))
    tiny.save_pretrained(str(models / "taesd"), safe_serialization=True)
    engine = Engine(ModelRegistry(models), EngineConfig(preview_fps=0)).start()
    try:
        events = []
        await engine.submit(GenerationRequest(model=DEMO, prompt="a cat", steps=2, width=64, height=64, seed=1),
                            events.append)
        assert [e.step for e in events if isinstance(e, Preview)] == [1, 2]
        assert any(isinstance(p, TaesdPreviewer) for p in engine.workers[0]._previewers.values())
    finally:
        await engine.aclose()
