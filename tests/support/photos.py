"""Real-looking test photos made on the spot: gradients, shapes and sensor noise, no files checked in."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def photo(width: int = 160, height: int = 120, variant: int = 0) -> Image.Image:
    """An RGB "photo": a sky-like gradient, a few solid shapes and mild noise; ``variant`` changes the scene."""
    rng = np.random.default_rng(variant)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    hue = rng.uniform(0, 1, 3)
    base = np.dstack([255 * (hue[0] * x / width + (1 - hue[0]) * y / height),
                      255 * (hue[1] * (1 - y / height) + (1 - hue[1]) * x / width),
                      255 * (hue[2] * (x + y) / (width + height) + (1 - hue[2]) * 0.5)])
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        x1, y1 = x0 + rng.integers(width // 8, width // 3), y0 + rng.integers(height // 8, height // 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()
