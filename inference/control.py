"""ControlNet inputs: a photo decoded at the generation's size, and the control images made from it.

Preprocessors need no weights (OpenCV only):

* ``canny``: ``cv2.Canny`` edges with the unit's thresholds, white on black (what the canny
  ControlNets were trained on);
* ``softedge``: a soft, multi-scale gradient magnitude, in the spirit of HED/PiDiNet maps
  (the softedge ControlNets, and scribble ones at a low scale);
* ``tile``: the photo itself, blurred by a down-and-up resize, so a tile ControlNet keeps
  its colours and layout while the model redraws the detail;
* ``none``: the image already is a control image (only resized).

The photo is decoded the way the art studio decodes uploads (``art.to_rgb_array``: EXIF
orientation, alpha onto white, 16-bit and CMYK to 8-bit RGB), but a JPEG is decoded at
1/2, 1/4 or 1/8 scale when the generation is that much smaller (libjpeg's DCT scaling):
a 12 MP phone photo costs a fraction of a full decode. Both the decoded photo and every
control image are cached by the sha256 of the bytes (plus size and parameters), so a
second style of the same photo decodes nothing. Blocking: call from a worker thread.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image

from inference.art import to_rgb_array
from inference.caches import TTLCache
from inference.images import EXIF_ORIENTATION_TAG, TRANSPOSED_ORIENTATIONS
from inference.requests import ControlUnit

# softedge: Gaussian scales (px at the generation's size) whose gradients are averaged: fine
# lines and broad shapes both show, as in HED's side outputs.
SOFTEDGE_SIGMAS_PX = (1.0, 2.5)
SOFTEDGE_PERCENTILE = 99.0  # the gradient that maps to white; robust to a few very sharp pixels
SOFTEDGE_GAMMA = 0.7  # lifts faint edges, as HED maps look
TILE_DOWNSCALE = 8  # tile: colours and layout survive a 1/8 resize, detail does not
PNG_COMPRESSION = 3  # cv2's default: control images are small; speed over the last bytes


@dataclass(frozen=True)
class ControlImage:
    """A unit's control image at the generation's size, and the PNG shown to the user."""

    rgb: np.ndarray  # (height, width, 3) uint8
    png: bytes

    @property
    def nbytes(self) -> int:
        return self.rgb.nbytes + len(self.png)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo_at_size(data: bytes, width: int, height: int) -> np.ndarray:
    """Decode, orient and flatten image bytes, then resize to exactly width x height (RGB uint8).

    The aspect ratio is not kept: the same stretch applies to the init image and to every
    control image, so they stay aligned; callers pick a size of the photo's aspect.
    """
    with Image.open(io.BytesIO(data)) as image:
        target = (width, height)
        if image.getexif().get(EXIF_ORIENTATION_TAG) in TRANSPOSED_ORIENTATIONS:
            target = (height, width)  # draft() sees the stored (unrotated) pixels
        image.draft("RGB", target)  # JPEG only: the largest DCT scale still >= target; a no-op otherwise
        rgb = to_rgb_array(image, max_side_px=None)
    if rgb.shape[:2] == (height, width):
        return rgb
    shrinking = rgb.shape[0] * rgb.shape[1] > width * height
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def canny(rgb: np.ndarray, low: int, high: int) -> np.ndarray:
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)
    return cv2.cvtColor(edges, cv2.COLOR_GRAY2RGB)


def softedge(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = np.zeros_like(grey)
    for sigma in SOFTEDGE_SIGMAS_PX:
        smooth = cv2.GaussianBlur(grey, (0, 0), sigma)
        magnitude += cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    top = float(np.percentile(magnitude, SOFTEDGE_PERCENTILE))
    if top <= 0:
        return np.zeros_like(rgb)  # a flat image has no edges
    soft = np.power(np.clip(magnitude / top, 0.0, 1.0), SOFTEDGE_GAMMA)
    return cv2.cvtColor((soft * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)


def tile(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, width // TILE_DOWNSCALE), max(1, height // TILE_DOWNSCALE)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def run_preprocessor(rgb: np.ndarray, unit: ControlUnit) -> np.ndarray:
    """The control image of `unit` from a photo already at the generation's size."""
    if unit.preprocessor == "canny":
        return canny(rgb, unit.low_threshold, unit.high_threshold)
    if unit.preprocessor == "softedge":
        return softedge(rgb)
    if unit.preprocessor == "tile":
        return tile(rgb)
    if unit.preprocessor == "none":
        return rgb
    raise ValueError(f"`preprocessor` {unit.preprocessor!r} is unknown")  # validation refuses it before


def encode_png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("PNG encoding of a control image failed")
    return data.tobytes()


def cache_size(value: object) -> int:
    """Bytes of what the control cache holds: decoded photos (arrays) and control images."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, ControlImage):
        return value.nbytes
    return 0


class PhotoSource:
    """One job's view of its images: each distinct photo hashed once, decoded at most once per size.

    `cache` (the engine's control cache, shared by jobs) keeps decoded photos and control
    images across jobs; without it every job decodes afresh.
    """

    def __init__(self, cache: TTLCache | None = None) -> None:
        self.cache = cache
        self._digests: dict[int, str] = {}
        self.control_hits = 0  # control images that came from the cache

    def digest(self, data: bytes) -> str:
        key = id(data)  # the request holds the bytes for the whole job, so the id is stable
        if key not in self._digests:
            self._digests[key] = content_hash(data)
        return self._digests[key]

    def photo(self, data: bytes, width: int, height: int) -> np.ndarray:
        """`photo_at_size`, cached by (sha256 of the bytes, size)."""
        photo, _hit = self._cached(("photo", self.digest(data), width, height),
                                   lambda: photo_at_size(data, width, height))
        return photo

    def control(self, unit: ControlUnit, width: int, height: int) -> ControlImage:
        """The unit's control image, cached by (sha256 of its image, preprocessor and parameters, size)."""
        key = ("control", self.digest(unit.image), unit.preprocess_key(), width, height)

        def make() -> ControlImage:
            rgb = np.ascontiguousarray(run_preprocessor(self.photo(unit.image, width, height), unit))
            rgb.setflags(write=False)
            return ControlImage(rgb=rgb, png=encode_png(rgb))

        image, hit = self._cached(key, make)
        self.control_hits += hit
        return image

    def _cached(self, key: tuple, make: Callable[[], Any]) -> tuple[Any, bool]:
        value = self.cache.get(key) if self.cache is not None else None
        if value is not None:
            return value, True
        value = make()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)  # shared by jobs through the cache: nobody may change it
        if self.cache is not None:
            self.cache.put(key, value)
        return value, False
