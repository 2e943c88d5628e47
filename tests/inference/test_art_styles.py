"""The art styles against photos made here (a portrait, a landscape, a flat graphic): pencil keeps shapes that differ
only in colour, colour pencil keeps their colour, watercolour is clearly not the photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference import art

SIDE = 256


def _lightness(rgb: tuple[int, int, int]) -> float:
    return float(cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2LAB)[0, 0, 0])


def _same_lightness_blue(red: tuple[int, int, int]) -> tuple[int, int, int]:
    """A saturated blue as light as `red`: only colour tells them apart."""
    target = _lightness(red)
    return min(((g, g, 255) for g in range(0, 256)), key=lambda c: abs(_lightness(c) - target))


def flat_graphic() -> tuple[np.ndarray, np.ndarray]:
    """A saturated red disc on a blue ground of the same lightness (and its mask)."""
    red = (225, 20, 30)
    image = np.empty((SIDE, SIDE, 3), np.uint8)
    image[:] = _same_lightness_blue(red)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    cv2.circle(mask, (SIDE // 2, SIDE // 2), SIDE // 4, 255, -1)
    image[mask > 0] = red
    return image, mask


def logo() -> tuple[np.ndarray, np.ndarray]:
    """A saturated red disc on white paper (and its mask), as a flat graphic or a logo."""
    image = np.full((SIDE, SIDE, 3), 255, np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    cv2.circle(mask, (SIDE // 2, SIDE // 2), SIDE // 4, 255, -1)
    image[mask > 0] = (220, 30, 40)
    return image, mask


def portrait() -> np.ndarray:
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    image[:] = (60, 70, 90)
    cv2.ellipse(image, (128, 120), (60, 80), 0, 0, 360, (225, 180, 150), -1)
    for x in (105, 151):
        cv2.circle(image, (x, 105), 8, (40, 30, 20), -1)
    cv2.ellipse(image, (128, 165), (22, 8), 0, 0, 180, (170, 60, 70), -1)
    noise = np.random.default_rng(1).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def landscape() -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    sky = np.stack([110 + y // 3, 160 + y // 4, 250 - y // 6], -1)
    hills = y > 140 + 20 * np.sin(x / 25)
    lake = y > 200
    image = sky.astype(np.float32)
    image[hills] = np.stack([np.full(hills.sum(), 60), 140 - (y[hills] - 140) // 3, np.full(hills.sum(), 50)], -1)
    image[lake] = (40, 90, 160)
    noise = np.random.default_rng(2).normal(0, 5, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return (cv2.dilate(mask, kernel) > 0) & ~(cv2.erode(mask, kernel) > 0)


@pytest.mark.parametrize("preset", list(art.PRESETS))
def test_pencil_keeps_a_shape_that_differs_only_in_colour(preset):
    image, mask = flat_graphic()
    darkness = 255 - art.render(image, "pencil", preset)[:, :, 0].astype(np.float32)
    edge = darkness[_ring(mask, 3)].mean()
    away = darkness[~_ring(mask, 12)].mean()
    assert edge - away > 25, f"the disc's outline is drawn: {edge:.1f} at the edge vs {away:.1f} elsewhere"


@pytest.mark.parametrize("preset", list(art.PRESETS))
def test_pencil_keeps_a_saturated_shape_as_a_shape_not_an_outline(preset):
    image, mask = logo()
    darkness = 255 - art.render(image, "pencil", preset)[:, :, 0].astype(np.float32)
    inside = (mask > 0) & ~_ring(mask, 8)
    outside = (mask == 0) & ~_ring(mask, 8)
    assert darkness[inside].mean() > 60, f"the disc is shaded ({darkness[inside].mean():.1f}), not left white"
    assert darkness[outside].mean() < 15, "the paper stays white"


@pytest.mark.parametrize("preset", list(art.PRESETS))
@pytest.mark.parametrize("make", [logo, flat_graphic], ids=["on-white", "on-blue"])
def test_colour_pencil_keeps_the_colour_of_saturated_shapes(preset, make):
    image, mask = make()
    hsv = cv2.cvtColor(art.render(image, "colour_pencil", preset), cv2.COLOR_RGB2HSV)
    inside = mask > 0
    inside &= ~_ring(mask, 8)
    hue, saturation = hsv[:, :, 0][inside], hsv[:, :, 1][inside]
    assert np.median(saturation) > 90, "the disc stays saturated"
    assert np.median(hue) < 10 or np.median(hue) > 170, "and red"
    outline = art.render(image, "colour_pencil", preset).astype(np.float32).sum(-1)
    assert outline[_ring(mask, 3)].mean() < outline[inside].mean() - 40, "with its outline drawn"


@pytest.mark.parametrize("make", [portrait, landscape, lambda: flat_graphic()[0]],
                         ids=["portrait", "landscape", "flat"])
def test_watercolour_is_not_the_photo(make):
    image = make()
    water = art.render(image, "watercolour", "fast").astype(np.float32)
    oil = art.render(image, "oil", "fast").astype(np.float32)
    photo = image.astype(np.float32)
    assert np.abs(water - photo).mean() > 18, "clearly painted, not the photo with a blur"
    assert np.abs(water - oil).mean() > 12, "and not the oil painting"
    assert water.mean() > photo.mean(), "washes are lighter than the photo (the paper shows through)"
