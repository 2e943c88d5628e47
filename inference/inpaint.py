"""Inpainting with a normal (4-channel) checkpoint, as AUTOMATIC1111 and diffusers do it.

The mask (white = repaint, black = keep; already inverted and blurred by whoever made the
request) becomes a latent mask. After every denoising step the kept latents are put back:
the init image's latents noised to the timestep the next step starts from (diffusers'
StableDiffusionInpaintPipeline for `num_channels_unet == 4`, A1111's `p.mask`/`p.nmask`).
After decoding, the kept area is composited back from the original pixels with the
blurred mask (A1111's overlay), so what was kept is the init image's, pixel for pixel.

`inpainting_fill` says what the repainted area starts from, in A1111's numbering:
0 the surrounding colours blurred into it, 1 the original, 2 fresh latent noise, 3 zeros.

`inpaint_full_res` (A1111's "only masked"): the mask's bounding box, padded and grown to the
request's aspect, is cut out, denoised at the request's size, scaled back and pasted into the
whole init image, which is the answer (at the init image's size).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageFilter, ImageOps

FILL = 0  # A1111's "fill": the masked area painted with blurred colours of its surroundings
ORIGINAL = 1
LATENT_NOISE = 2
LATENT_NOTHING = 3
# A1111's masking.fill: ever smaller blurs layered, so far colours fill the middle and near ones the edges.
FILL_BLURS = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))
FRESH_SEED_OFFSET = 2**32  # seeds are 32-bit: this is none of them


Box = tuple[int, int, int, int]  # x1, y1, x2, y2 (end exclusive)


@dataclass
class Region:
    """What one inpainting denoises (`photo`, `mask` at the request's size) and how the answer is made."""

    photo: np.ndarray  # RGB uint8, the init image (or the cut-out) at the request's size
    mask: np.ndarray  # float32 0..1, 1 = repaint, the same size
    box: Box | None = None  # "only masked": where the cut-out is in the whole init image
    whole_photo: np.ndarray | None = None
    whole_mask: np.ndarray | None = None

    @classmethod
    def make(cls, photo_at: Any, mask: bytes, width: int, height: int, *, whole: tuple[int, int] | None,
             padding: int = 0) -> "Region":
        """`photo_at(w, h)` gives the init image stretched to w x h; `whole` is its own size for "only masked"."""
        if whole is None:
            return cls(photo=photo_at(width, height), mask=mask_at_size(mask, width, height))
        whole_photo, whole_mask = photo_at(*whole), mask_at_size(mask, *whole)
        box = crop_box(whole_mask, padding, width, height)
        if box is None:  # nothing to repaint: the whole picture, which comes back as it was
            return cls(photo=photo_at(width, height), mask=mask_at_size(mask, width, height))
        x1, y1, x2, y2 = box
        cut = Image.fromarray(whole_photo[y1:y2, x1:x2]).resize((width, height), Image.Resampling.LANCZOS)
        cut_mask = Image.fromarray(whole_mask[y1:y2, x1:x2]).resize((width, height), Image.Resampling.BILINEAR)
        return cls(photo=np.asarray(cut), mask=np.clip(np.asarray(cut_mask, dtype=np.float32), 0.0, 1.0), box=box,
                   whole_photo=whole_photo, whole_mask=whole_mask)

    def finish(self, result: Image.Image) -> Image.Image:
        """The answer: the kept pixels the original's (and a cut-out pasted back into the whole picture)."""
        if self.box is None or self.whole_photo is None or self.whole_mask is None:
            # A1111 doubles the mask for the whole picture's overlay, so the repainted area shows fully
            # a little inside the feathered edge and the blend happens on the kept side.
            return composite(result, self.photo, np.clip(self.mask * 2.0, 0.0, 1.0))
        x1, y1, x2, y2 = self.box
        canvas = Image.fromarray(self.whole_photo)
        canvas.paste(result.convert("RGB").resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
        return composite(canvas, self.whole_photo, self.whole_mask)


def crop_box(mask: np.ndarray, padding: int, width: int, height: int) -> Box | None:
    """A1111's crop region: the mask's bounding box, padded, grown to width:height inside the image."""
    rows, cols = np.nonzero(mask > 0)
    if not len(cols):
        return None
    image_h, image_w = mask.shape
    x1, x2 = max(0, int(cols.min()) - padding), min(image_w, int(cols.max()) + 1 + padding)
    y1, y2 = max(0, int(rows.min()) - padding), min(image_h, int(rows.max()) + 1 + padding)
    if (x2 - x1) / (y2 - y1) < width / height:
        x1, x2 = _grow(x1, x2, min(image_w, round((y2 - y1) * width / height)), image_w)
    else:
        y1, y2 = _grow(y1, y2, min(image_h, round((x2 - x1) * height / width)), image_h)
    return x1, y1, x2, y2


def _grow(start: int, end: int, length: int, limit: int) -> tuple[int, int]:
    """[start, end) grown about its middle to `length`, shifted back inside [0, limit)."""
    start -= (length - (end - start)) // 2
    start = min(max(start, 0), limit - length)
    return start, start + length


def mask_at_size(data: bytes, width: int, height: int) -> np.ndarray:
    """The mask as float32 in 0..1 (1 = repaint), stretched to width x height like the init image."""
    with Image.open(io.BytesIO(data)) as opened:
        grey = ImageOps.exif_transpose(opened).convert("L")
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


def fill_masked(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A1111's `inpainting_fill` 0: the repainted area filled from the colours around it."""
    image = Image.fromarray(photo).convert("RGBA")
    keep = Image.fromarray(np.round((1.0 - mask) * 255).astype(np.uint8))
    masked = Image.new("RGBa", image.size)
    masked.paste(image.convert("RGBa"), mask=keep)
    filled = Image.new("RGBA", image.size)
    for radius, repeats in FILL_BLURS:
        blurred = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return np.asarray(filled.convert("RGB"))


@dataclass
class LatentMask:
    """What the denoising loop needs to keep the unmasked latents the init image's."""

    keep: torch.Tensor  # (1, 1, h, w): 1 where the init image stays
    init: torch.Tensor  # the init latents (batch, c, h, w), before any noise
    noise: torch.Tensor  # the noise the pipeline adds to them (same seeds, same draw)

    @classmethod
    def make(cls, mask: np.ndarray, init: torch.Tensor, seeds: list[int],
             fill: int) -> tuple["LatentMask", torch.Tensor]:
        """The latent mask, and the init latents the pipeline should start from (`fill` applied)."""
        height, width = init.shape[-2:]
        small = Image.fromarray(np.round(mask * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
        # A1111's `mask_round`: a latent is either repainted or kept; the pixel composite does the feathering.
        repaint = torch.from_numpy(np.around(np.asarray(small, dtype=np.float32) / 255.0))
        keep = (1.0 - repaint)[None, None].to(device=init.device, dtype=init.dtype)
        batch = init.expand(len(seeds), -1, -1, -1)
        # The pipeline draws its img2img noise first from generators seeded so: the same draw is the same noise.
        noise = randn_tensor(tuple(batch.shape), generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                             device=init.device, dtype=init.dtype)
        start = init
        if fill == LATENT_NOTHING:
            start = init * keep
        elif fill == LATENT_NOISE:
            # Seeded apart from every image's own noise (seed + 1 is the next image's seed).
            apart = [torch.Generator("cpu").manual_seed(s + FRESH_SEED_OFFSET) for s in seeds]
            fresh = randn_tensor(tuple(batch.shape), generator=apart, device=init.device, dtype=init.dtype)
            start = batch * keep + fresh * (1.0 - keep)
        return cls(keep=keep, init=start.expand(len(seeds), -1, -1, -1), noise=noise), start

    def blend(self, pipe: Any, index: int, latents: torch.Tensor) -> torch.Tensor:
        """After step `index`: kept latents = the init latents noised to where the next step starts."""
        scheduler = pipe.scheduler
        schedule = scheduler.timesteps
        following = len(schedule) - pipe.num_timesteps + index + 1
        init = self.init.to(latents.dtype)
        if following < len(schedule):
            # Schedulers with a step index (Euler, DPM++, UniPC) noise to it; DDIM to the timestep given.
            init = scheduler.add_noise(init, self.noise.to(latents.dtype), schedule[following:following + 1])
        return init * self.keep + latents * (1.0 - self.keep)

    def preview(self, x0: torch.Tensor) -> torch.Tensor:
        """The predicted image with the kept area shown as it will end."""
        if x0.shape != self.init.shape:
            return x0
        return self.init.to(x0.dtype) * self.keep + x0 * (1.0 - self.keep)


def composite(result: Image.Image, photo: np.ndarray, mask: np.ndarray) -> Image.Image:
    """A1111's overlay: the original pixels over the result where the (blurred) mask keeps them."""
    alpha = mask[..., None]
    generated = np.asarray(result.convert("RGB"), dtype=np.float32)
    mixed = photo.astype(np.float32) * (1.0 - alpha) + generated * alpha
    return Image.fromarray(np.clip(np.round(mixed), 0, 255).astype(np.uint8))
