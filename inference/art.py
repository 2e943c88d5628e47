"""Art filters: a photo becomes a pencil sketch, a colour-pencil drawing, an oil painting or a watercolour.

Computational-photography filters from OpenCV (non-photorealistic rendering in
``cv2.pencilSketch`` and ``cv2.stylization``, ``cv2.xphoto.oilPainting`` from
opencv-contrib): no model weights, nothing to download, CPU only. Pure functions,
blocking: call them from a thread pool (OpenCV releases the GIL while it works).
Nothing here knows of the web; the caller checks uploads before handing them over.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
from PIL import Image, ImageOps

from inference.art_names import STYLES

DEFAULT_MAX_SIDE_PX = 1024
# pHash of 16×16 DCT coefficients: 256 bits, robust to re-encoding and mild rescaling.
PHASH_SIDE = 16
# Background that transparent pixels are flattened onto (paper white suits every style).
BACKGROUND_RGB = (255, 255, 255)
PENCIL_DENOISE_SIGMA_PX = 1.2


@dataclass(frozen=True)
class Preset:
    """Filter parameters for one speed/quality trade-off."""

    # pencilSketch: spatial sigma (0–200), range sigma (0–1), shade darkness (0–0.1).
    pencil_sigma_s: float
    pencil_sigma_r: float
    pencil_shade: float
    # oilPainting: neighbourhood size in pixels and dynamic-range ratio.
    oil_size: int
    oil_dyn_ratio: int
    # stylization (watercolour): spatial sigma and range sigma.
    water_sigma_s: float
    water_sigma_r: float
    # The edge-aware filters (oil, watercolour) run at this fraction of the size, then are scaled back:
    # their cost grows with the pixel count, and at half size the brush strokes simply look broader.
    work_scale: float


PRESETS: dict[str, Preset] = {
    "fast": Preset(pencil_sigma_s=30, pencil_sigma_r=0.08, pencil_shade=0.05, oil_size=4, oil_dyn_ratio=1,
                   water_sigma_s=30, water_sigma_r=0.4, work_scale=0.5),
    "quality": Preset(pencil_sigma_s=60, pencil_sigma_r=0.07, pencil_shade=0.05, oil_size=7, oil_dyn_ratio=1,
                      water_sigma_s=60, water_sigma_r=0.45, work_scale=1.0),
}


def to_rgb_array(image: Image.Image, max_side_px: int | None = DEFAULT_MAX_SIDE_PX) -> np.ndarray:
    """An 8-bit RGB array (H, W, 3) of a decoded photo: upright, flattened, scaled to ``max_side_px`` at most.

    EXIF orientation is applied; alpha is composited onto white; 16-bit and float
    greys are scaled to 8 bits; CMYK, palette and the rest are converted to RGB.
    ``max_side_px=None`` keeps the full size.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = Image.fromarray(_grey_to_8bit(image), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND_RGB)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, L, 1 ...
    if max_side_px is not None and max(image.size) > max_side_px:
        scale = max_side_px / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # reducing_gap: a fast box pre-shrink, then Lanczos for the last factor of two.
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8).copy()


def _grey_to_8bit(image: Image.Image) -> np.ndarray:
    """16-bit, 32-bit and float greys as 8 bits, in the image's own width (never float64: a 40 MP
    16-bit PNG of a few KB would otherwise cost about a gigabyte of temporary arrays)."""
    if image.mode.startswith("I;16"):
        return (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)  # 65535 -> 255
    values = np.asarray(image)  # int32 ("I") or float32 ("F")
    peak = values.max(initial=0)
    if image.mode == "F":
        scale = 255.0 if peak <= 1.0 else 1.0
        return np.clip(values * np.float32(scale), 0, 255).astype(np.uint8)
    if peak > 255:
        values = values // 257  # 0..65535 -> 0..255
    return np.clip(values, 0, 255).astype(np.uint8)


def perceptual_hash(rgb: np.ndarray) -> str:
    """The 256-bit pHash of a photo as 64 hex digits; near-identical photos give near-identical hashes."""
    return str(imagehash.phash(Image.fromarray(rgb), hash_size=PHASH_SIDE))


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _at_work_scale(bgr: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return bgr
    height, width = bgr.shape[:2]
    return cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def _back_to(bgr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if bgr.shape[:2] == shape[:2]:
        return bgr
    return cv2.resize(bgr, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def render(rgb: np.ndarray, style: str, preset: str = "fast") -> np.ndarray:
    """One style of an RGB photo, as an RGB array of the same size."""
    if style not in STYLES:
        raise ValueError(f"`style` must be one of {', '.join(STYLES)} but is {style!r}.")
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {', '.join(PRESETS)} but is {preset!r}.")
    p = PRESETS[preset]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if style in ("pencil", "colour_pencil"):
        # A light blur first: pencilSketch draws every speck of sensor noise as a stroke otherwise.
        smooth = cv2.GaussianBlur(bgr, (0, 0), PENCIL_DENOISE_SIGMA_PX)
        grey = _pencil_strokes(smooth, p)
        if style == "pencil":
            return cv2.cvtColor(_graphite_tone(smooth, grey), cv2.COLOR_GRAY2RGB)
        return _colour_pencil(smooth, grey)
    work = _at_work_scale(bgr, p.work_scale)
    if style == "oil":
        out = cv2.xphoto.oilPainting(work, p.oil_size, p.oil_dyn_ratio)
    else:
        out = _watercolour(work, p)
    return cv2.cvtColor(_back_to(out, bgr.shape), cv2.COLOR_BGR2RGB)


# Pencil: strokes where lightness changes, and also where only colour does (a red shape on a blue ground of the
# same lightness was lost to a sketch of the lightness alone). Each Lab channel is sketched; the darkest stroke wins.
CHROMA_STRETCH = 2.2  # a/b span about ±60 around 128 in a photo: stretched so their edges draw like lightness edges
# Pencil shades dark and strongly coloured areas with graphite, so a saturated shape keeps its mass (a sketch of
# edges alone left a red logo on white as a thin outline on white paper).
PENCIL_TONE = 0.55
PENCIL_TONE_SATURATION = 0.7  # how much saturation counts as darkness
# Colour pencil: the paper shows through the colour (lighter, a touch less saturated), the strokes on top.
COLOUR_PENCIL_PAPER = 0.25
# Watercolour: flat washes of lighter, slightly bled colour on textured paper, darker where washes meet.
WATER_LIGHTEN = 0.22  # towards the paper
WATER_LEVELS = 10  # colour steps per channel: flat washes instead of the photo's gradients
WATER_EDGE_DARKEN = 0.45  # pigment pooling at a wash's edge
WATER_PAPER_GRAIN = 0.06  # depth of the paper's texture
PAPER_SEED = 1826  # the paper is the same for every photo (results are cached by the photo's hash)


def _pencil_strokes(smooth_bgr: np.ndarray, p: Preset) -> np.ndarray:
    lab = cv2.cvtColor(smooth_bgr, cv2.COLOR_BGR2LAB)
    strokes = None
    for channel in range(3):
        plane = lab[:, :, channel]
        if channel:  # a, b: stretch the chroma around neutral
            plane = np.clip((plane.astype(np.float32) - 128) * CHROMA_STRETCH + 128, 0, 255).astype(np.uint8)
        sketch, _ = cv2.pencilSketch(cv2.cvtColor(plane, cv2.COLOR_GRAY2BGR), sigma_s=p.pencil_sigma_s,
                                     sigma_r=p.pencil_sigma_r, shade_factor=p.pencil_shade)
        strokes = sketch if strokes is None else np.minimum(strokes, sketch)
    return strokes


def _graphite_tone(smooth_bgr: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    lightness = cv2.cvtColor(smooth_bgr, cv2.COLOR_BGR2LAB)[:, :, 0].astype(np.float32)
    saturation = cv2.cvtColor(smooth_bgr, cv2.COLOR_BGR2HSV)[:, :, 1].astype(np.float32)
    tone = cv2.GaussianBlur(np.maximum(255 - lightness, saturation * PENCIL_TONE_SATURATION), (0, 0), 2.0)
    out = strokes.astype(np.float32) * (1 - PENCIL_TONE * tone / 255)
    return np.clip(out, 0, 255).astype(np.uint8)


def _colour_pencil(smooth_bgr: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    colour = smooth_bgr.astype(np.float32)
    colour = colour * (1 - COLOUR_PENCIL_PAPER) + 255 * COLOUR_PENCIL_PAPER
    out = colour * (strokes.astype(np.float32)[:, :, None] / 255)
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)


def _watercolour(work_bgr: np.ndarray, p: Preset) -> np.ndarray:
    washes = cv2.stylization(work_bgr, sigma_s=p.water_sigma_s, sigma_r=p.water_sigma_r)
    step = 256 // WATER_LEVELS
    levels = (washes.astype(np.int16) // step) * step + step // 2  # flat areas of one colour
    washes = np.clip(levels, 0, 255).astype(np.uint8)
    washes = cv2.medianBlur(washes, 5)  # the colour bleeds a little across the steps
    out = washes.astype(np.float32) * (1 - WATER_LIGHTEN) + 255 * WATER_LIGHTEN
    grey = cv2.cvtColor(washes, cv2.COLOR_BGR2GRAY)
    edges = cv2.GaussianBlur(cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)), (0, 0), 1.0)
    out *= 1 - WATER_EDGE_DARKEN * (edges.astype(np.float32)[:, :, None] / 255)
    out *= _paper(work_bgr.shape[:2])[:, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _paper(shape: tuple[int, int]) -> np.ndarray:
    """A grain between 1 - WATER_PAPER_GRAIN and 1, the same for every photo of a size."""
    noise = np.random.default_rng(PAPER_SEED).random(shape, dtype=np.float32)
    grain = cv2.GaussianBlur(noise, (0, 0), 1.5)
    grain = (grain - grain.min()) / max(1e-6, float(grain.max() - grain.min()))
    return 1 - WATER_PAPER_GRAIN * grain
