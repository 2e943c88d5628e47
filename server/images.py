"""Checking and re-encoding images that people upload. Blocking: call through the CPU executor."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import InvalidInput, UnsupportedMediaType

ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}
# Refused before decoding: a small file can declare enormous dimensions (a decompression bomb).
MAX_UPLOAD_PIXELS = 40_000_000
AVATAR_WEBP_QUALITY = 85
THUMBNAIL_SIDE_PX = 384
THUMBNAIL_WEBP_QUALITY = 80


def open_checked(data: bytes, *, max_pixels: int = MAX_UPLOAD_PIXELS, min_side_px: int = 1,
                 max_side_px: int | None = None, draft_side_px: int | None = None) -> Image.Image:
    """Open an uploaded image after checking its format and size from the header alone.

    ``draft_side_px``: a JPEG is decoded at 1/2..1/8 scale when that still covers this many pixels a side.
    """
    image = probe_checked(data, max_pixels=max_pixels, min_side_px=min_side_px, max_side_px=max_side_px)
    if draft_side_px is not None:
        image.draft("RGB", (draft_side_px, draft_side_px))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"The image could not be decoded: {exc}.", code="invalid_image") from None
    return image


def probe_checked(data: bytes, *, max_pixels: int = MAX_UPLOAD_PIXELS, min_side_px: int = 1,
                  max_side_px: int | None = None) -> Image.Image:
    """An uploaded image, opened but not decoded, once its format and size are checked from the header."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedMediaType("The file is not an image Pillow can read (PNG, JPEG, WebP or GIF).") from None
    except Image.DecompressionBombError:
        raise InvalidInput(
            f"The image declares more than {max_pixels:,} pixels and was not decoded.", code="image_too_large"
        ) from None
    if image.format not in ACCEPTED_FORMATS:
        raise UnsupportedMediaType(f"Images must be PNG, JPEG, WebP or GIF, not {image.format}.")
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidInput(
            f"The image is {width}×{height} pixels; at most {max_pixels:,} pixels are accepted.", code="image_too_large"
        )
    if max_side_px is not None and max(width, height) > max_side_px:
        raise InvalidInput(
            f"The image is {width}×{height} pixels; each side must be at most {max_side_px:,}.", code="image_too_wide"
        )
    if min(width, height) < min_side_px:
        raise InvalidInput(
            f"The image is {width}×{height} pixels; each side must be at least {min_side_px}.", code="image_too_small"
        )
    return image


def make_avatar(data: bytes, size_px: int) -> bytes:
    """Verify an upload and re-encode it as a square WebP, dropping metadata (EXIF, GPS)."""
    image = open_checked(data)
    image = ImageOps.exif_transpose(image)
    image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    image = ImageOps.fit(image, (size_px, size_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=AVATAR_WEBP_QUALITY)
    return out.getvalue()


def make_thumbnail(png: bytes, side_px: int = THUMBNAIL_SIDE_PX) -> bytes:
    """A WebP no larger than ``side_px`` on its long side, for galleries and history strips."""
    image = Image.open(io.BytesIO(png))
    image.thumbnail((side_px, side_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="WEBP", quality=THUMBNAIL_WEBP_QUALITY)
    return out.getvalue()


DISPLAY_WEBP_QUALITY = 85
# 16-bit samples to 8-bit: the high byte.
SIXTEEN_TO_EIGHT_BITS = 1 / 256


def make_display_copy(data: bytes, side_px: int) -> tuple[bytes, int, int]:
    """An upload as a WebP at most ``side_px`` on its long side, upright (EXIF applied), without metadata.

    For showing people's photos (a preset's cover, the original beside a stylized result): EXIF and
    GPS never leave; 16-bit, CMYK, palette and alpha images come out as plain 8-bit RGB (alpha on white).
    """
    image = ImageOps.exif_transpose(open_checked(data, draft_side_px=side_px))
    image = _to_rgb(image)
    image.thumbnail((side_px, side_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=DISPLAY_WEBP_QUALITY)
    return out.getvalue(), image.width, image.height


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda value: value * SIXTEEN_TO_EIGHT_BITS).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")
