"""The art filters alone: four styles, two presets, the input forms photos arrive in, the perceptual hash."""

import io

import numpy as np
import pytest
from PIL import Image

from inference import art
from server.worker.art import NEAR_DUPLICATE_BITS
from tests.support.photos import encode, photo


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return art.to_rgb_array(photo(200, 150), max_side_px=120)


@pytest.mark.parametrize("preset", sorted(art.PRESETS))
@pytest.mark.parametrize("style", art.STYLES)
def test_each_style_keeps_the_scaled_size_and_changes_the_picture(rgb, style, preset):
    assert rgb.shape == (90, 120, 3)
    out = art.render(rgb, style, preset)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    difference = np.abs(out.astype(np.int16) - rgb.astype(np.int16)).mean()
    assert difference > 5, f"{style}/{preset} barely changed the photo ({difference:.1f})"


def test_the_styles_differ_from_each_other(rgb):
    outputs = {style: art.render(rgb, style, "fast") for style in art.STYLES}
    pencil = outputs["pencil"]
    assert (pencil[..., 0] == pencil[..., 1]).all() and (pencil[..., 1] == pencil[..., 2]).all(), "pencil is grey"
    for a in art.STYLES:
        for b in art.STYLES:
            if a < b:
                assert not np.array_equal(outputs[a], outputs[b]), (a, b)


def test_unknown_style_or_preset_is_named(rgb):
    with pytest.raises(ValueError, match="`style`.*'crayon'"):
        art.render(rgb, "crayon")
    with pytest.raises(ValueError, match="`preset`.*'slow'"):
        art.render(rgb, "oil", "slow")


def test_scaled_to_the_long_side_and_never_up():
    assert art.to_rgb_array(photo(300, 200), max_side_px=150).shape == (100, 150, 3)
    assert art.to_rgb_array(photo(200, 300), max_side_px=150).shape == (150, 100, 3)
    assert art.to_rgb_array(photo(80, 60), max_side_px=150).shape == (60, 80, 3)
    assert art.to_rgb_array(photo(300, 200), max_side_px=None).shape == (200, 300, 3)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise: stored landscape, shown portrait
    data = encode(photo(160, 120), "JPEG", exif=exif.tobytes())
    assert art.to_rgb_array(Image.open(io.BytesIO(data))).shape == (160, 120, 3)


def test_alpha_is_flattened_onto_white():
    rgba = Image.new("RGBA", (64, 48), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 48))
    out = art.to_rgb_array(Image.open(io.BytesIO(encode(rgba))))
    assert out.shape == (48, 64, 3)
    assert tuple(out[10, 10]) == (0, 0, 255) and tuple(out[10, 50]) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    values = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    image = Image.open(io.BytesIO(encode(Image.fromarray(values))))
    assert image.mode.startswith("I")
    out = art.to_rgb_array(image)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and 120 < out[24, 32, 0] < 135


def test_cmyk_jpeg_is_converted():
    source = photo(64, 48)
    out = art.to_rgb_array(Image.open(io.BytesIO(encode(source.convert("CMYK"), "JPEG", quality=95))))
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - np.asarray(source, dtype=int)).mean() < 20


def test_perceptual_hash_survives_reencoding_and_tells_photos_apart():
    def hashed(data: bytes) -> str:
        return art.perceptual_hash(art.to_rgb_array(Image.open(io.BytesIO(data)), 256))

    original = hashed(encode(photo(320, 240), "PNG"))
    assert len(original) == 64, "256 bits"
    for quality in (95, 70, 40):
        assert art.hamming(original, hashed(encode(photo(320, 240), "JPEG", quality=quality))) <= NEAR_DUPLICATE_BITS
    other = hashed(encode(photo(320, 240, variant=1), "PNG"))
    assert art.hamming(original, other) > 4 * NEAR_DUPLICATE_BITS
