"""ControlNet preprocessing: the photo decoded upright at the generation's size, then canny, soft edge or tile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.caches import TTLCache
from inference.control import PhotoSource, cache_size, canny, photo_at_size, run_preprocessor, softedge, tile
from inference.images import EXIF_ORIENTATION_TAG, fit_to_area, upright_size
from inference.requests import ControlUnit
from tests.support.photos import encode, photo


def halves(width: int = 80, height: int = 40) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def test_exif_orientation_is_applied_before_resizing() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6  # stored sideways: shown turned 90° clockwise
    data = encode(halves(), "JPEG", quality=95, exif=exif.tobytes())
    rgb = photo_at_size(data, 40, 80)
    assert rgb.shape == (80, 40, 3)
    top, bottom = rgb[:30].reshape(-1, 3).mean(0), rgb[50:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_alpha_is_flattened_onto_white_and_16_bit_is_scaled() -> None:
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((10, 20, 30, 255), (0, 0, 16, 32))
    rgb = photo_at_size(encode(rgba), 32, 32)
    assert tuple(rgb[0, 0]) == (10, 20, 30) and tuple(rgb[0, 31]) == (255, 255, 255)
    grey16 = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))
    assert photo_at_size(encode(grey16), 16, 16).min() == 255


def test_a_large_jpeg_decodes_reduced_yet_matches_a_full_decode() -> None:
    big = photo(1600, 1200, variant=3)
    data = encode(big, "JPEG", quality=92)
    fast = photo_at_size(data, 128, 96).astype(np.int16)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((128, 96), Image.Resampling.BOX),
                      dtype=np.int16)
    assert fast.shape == (96, 128, 3)
    assert np.abs(fast - full).mean() < 4  # DCT-scaled decoding is a box filter too


def test_canny_thresholds_and_output_shape() -> None:
    rgb = photo_at_size(encode(photo(160, 120, variant=1)), 128, 96)
    low, high = canny(rgb, 20, 60), canny(rgb, 150, 250)
    assert low.shape == rgb.shape and low.dtype == np.uint8
    assert set(np.unique(low)) == {0, 255}
    assert (low > 0).sum() > (high > 0).sum() > 0  # higher thresholds keep fewer edges
    assert np.array_equal(low[..., 0], low[..., 2])  # grey in RGB, as the canny ControlNets were trained


def test_softedge_is_soft_and_flat_images_have_no_edges() -> None:
    rgb = photo_at_size(encode(photo(160, 120, variant=1)), 128, 96)
    soft = softedge(rgb)
    assert soft.shape == rgb.shape and len(np.unique(soft)) > 32 and soft.max() == 255
    assert not softedge(np.full((32, 32, 3), 128, np.uint8)).any()


def test_tile_keeps_the_colours_and_drops_the_detail() -> None:
    rgb = photo_at_size(encode(photo(160, 120, variant=1)), 128, 96)
    blurred = tile(rgb)
    assert blurred.shape == rgb.shape
    assert np.abs(blurred.astype(float).mean((0, 1)) - rgb.astype(float).mean((0, 1))).max() < 3
    high_frequency = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert high_frequency(blurred) < high_frequency(rgb) / 2


def test_none_passes_the_control_image_through() -> None:
    rgb = photo_at_size(encode(photo(64, 64, variant=4)), 64, 64)
    assert run_preprocessor(rgb, ControlUnit(model="x", preprocessor="none")) is rgb


def test_photos_and_control_images_are_cached_by_content_and_parameters() -> None:
    cache: TTLCache = TTLCache(16, size_of=cache_size)
    data = encode(photo(160, 120, variant=1))
    unit = ControlUnit(model="x", image=data)
    first = PhotoSource(cache).control(unit, 64, 64)
    source = PhotoSource(cache)
    again = source.control(ControlUnit(model="y", image=bytes(bytearray(data)), scale=0.3), 64, 64)
    assert again is first and source.control_hits == 1  # another model and scale: the same control image
    assert not again.rgb.flags.writeable  # shared through the cache, so nobody may change it
    other = source.control(ControlUnit(model="x", image=data, low_threshold=5, high_threshold=10), 64, 64)
    assert other is not first and source.control_hits == 1
    assert cache.stats()["entries"] == 3 and cache.bytes == sum(cache_size(v) for v in (first, other)) + 64 * 64 * 3
    assert Image.open(io.BytesIO(first.png)).size == (64, 64)


@pytest.mark.parametrize("preprocessor", ["canny", "softedge", "tile", "none"])
def test_every_preprocessor_gives_the_generation_size(preprocessor: str) -> None:
    unit = ControlUnit(model="x", image=encode(photo(100, 60, variant=2), "WEBP"), preprocessor=preprocessor)
    image = PhotoSource().control(unit, 96, 64)
    assert image.rgb.shape == (64, 96, 3)
    assert Image.open(io.BytesIO(image.png)).size == (96, 64)


def test_upright_size_and_fit_to_area() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6
    assert upright_size(encode(halves(80, 40), "JPEG", exif=exif.tobytes())) == (40, 80)
    assert upright_size(encode(halves(80, 40))) == (80, 40)
    assert fit_to_area(4000, 3000, 512) == (592, 440)  # 4:3 at about 512² pixels, multiples of 8
    assert fit_to_area(3000, 4000, 1024) == (888, 1184)
    assert fit_to_area(100, 100, 512) == (512, 512)
