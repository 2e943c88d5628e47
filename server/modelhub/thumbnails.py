"""A model's preview image: checked from its header, re-encoded as a 4:3 WebP without metadata."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from server.images import open_checked

PREVIEW_SIZE_PX = (480, 360)  # the 4:3 tiles of the Models page, sharp on 2x screens at 240 px
PREVIEW_WEBP_QUALITY = 82


def make_preview(data: bytes) -> bytes:
    """Verify an uploaded image and crop it to the tile shape (blocks: run in the CPU pool)."""
    image = ImageOps.exif_transpose(open_checked(data))
    image = ImageOps.fit(image.convert("RGB"), PREVIEW_SIZE_PX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=PREVIEW_WEBP_QUALITY)
    return out.getvalue()
