"""Image bytes in and out: init-image probing before decode, PNG with A1111 parameters."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from inference.errors import InvalidRequest

# A 2048 x 2048 request is the largest output; an init image is resized to the request,
# so anything past 4x that in pixels is a bomb or a mistake, never a useful input.
MAX_INIT_IMAGE_PIXELS = 4 * 2048 * 2048
MAX_INIT_IMAGE_BYTES = 32 * 1024 * 1024
ALLOWED_INIT_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageProbe:
    format: str
    width: int
    height: int


def probe_image(data: bytes, *, max_pixels: int = MAX_INIT_IMAGE_PIXELS, field: str = "init_image") -> ImageProbe:
    """Read only the header: format and size, refusing non-images and decompression bombs.

    `Image.open` parses the header without decoding pixels, so a 100,000 x 100,000 PNG of
    a few kilobytes is refused here before any memory is spent on it. Errors name `field`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise InvalidRequest(f"`{field}` must be non-empty image bytes.", code="invalid_image", field=field)
    if len(data) > MAX_INIT_IMAGE_BYTES:
        raise InvalidRequest(
            f"`{field}` is {len(data)} bytes; the limit is {MAX_INIT_IMAGE_BYTES}.",
            code="image_too_large",
            field=field,
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its own limit raises) on huge headers; we decide below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data))) as img:
                fmt, (width, height) = img.format or "", img.size
    except Image.DecompressionBombError as exc:
        raise InvalidRequest(
            f"`{field}` is a decompression bomb: {exc}",
            code="image_too_large",
            field=field,
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(
            f"`{field}` is not a readable image ({exc.__class__.__name__}).", code="invalid_image", field=field
        ) from None
    if fmt not in ALLOWED_INIT_FORMATS:
        raise InvalidRequest(
            f"`{field}` is {fmt or 'an unknown format'}; use one of {sorted(ALLOWED_INIT_FORMATS)}.",
            code="invalid_image",
            field=field,
        )
    if width * height > max_pixels:
        raise InvalidRequest(
            f"`{field}` is {width}x{height} = {width * height} pixels; the limit is {max_pixels}.",
            code="image_too_large",
            field=field,
        )
    return ImageProbe(fmt, width, height)


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image as shown, EXIF orientation applied, from its header alone."""
    with Image.open(io.BytesIO(bytes(data))) as img:
        width, height = img.size
        if img.getexif().get(EXIF_ORIENTATION_TAG) in TRANSPOSED_ORIENTATIONS:
            return height, width
    return width, height


def fit_to_area(width: int, height: int, side_px: int, multiple_px: int = 8) -> tuple[int, int]:
    """A size of the same aspect as width x height holding about side_px² pixels, in multiples of `multiple_px`.

    What a model trained at side_px x side_px handles best for a photo of that shape.
    """
    scale = (side_px * side_px / (width * height)) ** 0.5
    return (max(multiple_px, round(width * scale / multiple_px) * multiple_px),
            max(multiple_px, round(height * scale / multiple_px) * multiple_px))


def a1111_parameters(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler: str,
    guidance: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    model_hash: str | None,
    strength: float | None = None,
    clip_skip: int | None = None,
    controls: list[dict[str, Any]] | None = None,
) -> str:
    """The `parameters` text AUTOMATIC1111 writes, which its PNG-info reader and others parse.

    `controls` are ControlNet unit settings (`ControlUnit.settings()`), written as the
    sd-webui-controlnet extension writes them: `ControlNet 0: "Module: canny, Model: ..."`.
    """
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    fields = [
        ("Steps", steps),
        ("Sampler", sampler),
        ("CFG scale", f"{guidance:g}"),
        ("Seed", seed),
        ("Size", f"{width}x{height}"),
    ]
    if model_hash:
        fields.append(("Model hash", model_hash))
    fields.append(("Model", model))
    if strength is not None:
        fields.append(("Denoising strength", f"{strength:g}"))
    if clip_skip and clip_skip > 1:
        fields.append(("Clip skip", clip_skip))
    for index, unit in enumerate(controls or ()):
        parts = [("Module", unit["preprocessor"]), ("Model", unit["model"]), ("Weight", f"{unit['scale']:g}")]
        if unit["preprocessor"] == "canny":
            parts += [("Threshold A", unit["low_threshold"]), ("Threshold B", unit["high_threshold"])]
        parts += [("Guidance Start", f"{unit['start']:g}"), ("Guidance End", f"{unit['end']:g}")]
        fields.append((f"ControlNet {index}", '"' + ", ".join(f"{k}: {v}" for k, v in parts) + '"'))
    lines.append(", ".join(f"{key}: {value}" for key, value in fields))
    return "\n".join(lines)


def encode_png(image: Image.Image, parameters: str) -> bytes:
    """PNG bytes with a `parameters` tEXt/iTXt chunk (iTXt when the text is not Latin-1)."""
    info = PngImagePlugin.PngInfo()
    try:
        parameters.encode("latin-1")
        info.add_text("parameters", parameters)
    except UnicodeEncodeError:
        info.add_itxt("parameters", parameters)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()
