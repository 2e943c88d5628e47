"""ControlNet units on a request: refused up front with a reason that names the value; stored as JSON."""

from __future__ import annotations

import json

import pytest

from inference.errors import InvalidRequest
from tests.inference.conftest import DEMO, png_bytes
from tests.inference.test_requests import bomb_png, req


def unit(**overrides) -> dict:
    return {"model": "canny-net", "image": png_bytes(), **overrides}


BAD_CONTROLS = [
    pytest.param([unit(model="nope")], "unknown_controlnet", "nope", id="unknown-controlnet"),
    pytest.param([unit(colour="red")], "invalid_control", "colour", id="unknown-key"),
    pytest.param("canny", "invalid_control", "at most 3", id="not-a-list"),
    pytest.param([unit()] * 4, "invalid_control", "at most 3", id="four-units"),
    pytest.param([unit(preprocessor="depth")], "invalid_control", "depth", id="unknown-preprocessor"),
    pytest.param([unit(scale=2.5)], "invalid_control", "controls[0].scale", id="scale-2.5"),
    pytest.param([unit(scale=float("nan"))], "invalid_control", "nan", id="scale-nan"),
    pytest.param([unit(scale=True)], "invalid_control", "True", id="scale-bool"),
    pytest.param([unit(start=-0.1)], "invalid_control", "controls[0].start", id="start-negative"),
    pytest.param([unit(), unit(start=0.6, end=0.6)], "invalid_control", "controls[1].start", id="start-not-below-end"),
    pytest.param([unit(low_threshold=0)], "invalid_control", "low_threshold", id="threshold-0"),
    pytest.param([unit(high_threshold=300)], "invalid_control", "high_threshold", id="threshold-300"),
    pytest.param([unit(low_threshold=9.5)], "invalid_control", "9.5", id="threshold-float"),
    pytest.param([unit(low_threshold=200, high_threshold=100)], "invalid_control", "must not exceed",
                 id="thresholds-crossed"),
    pytest.param([unit(image=b"not an image")], "invalid_image", "controls[0].image", id="not-an-image"),
    pytest.param([unit(image=b"")], "invalid_image", "controls[0].image", id="empty-image"),
    pytest.param([unit(image=bomb_png())], "image_too_large", "controls[0].image", id="bomb"),
    pytest.param([unit(model="xl-net")], "controlnet_base_mismatch", "xl-net", id="wrong-base"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("controls", "code", "named"), BAD_CONTROLS)
def test_bad_control_units_are_refused_naming_the_value(controls: object, code: str, named: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        req(controls=controls).validate({DEMO}, model_family="sd1",
                                        known_controlnets={"canny-net": "sd1", "xl-net": "sdxl"})
    assert caught.value.code == code
    assert named in caught.value.message
    assert caught.value.field is not None and caught.value.field.startswith("controls")


@pytest.mark.timeout(30)
def test_good_control_units_pass_and_settings_are_json() -> None:
    request = req(controls=[unit(), unit(preprocessor="softedge", scale=0, start=0.2, end=0.8),
                            unit(preprocessor="none", scale=2)])
    request.validate({DEMO}, model_family="sd1", known_controlnets={"canny-net": "sd1"})
    settings = [u.settings() for u in request.controls]
    assert json.loads(json.dumps(settings)) == settings and "image" not in settings[0]
    assert req(controls=[{**s, "image": png_bytes()} for s in settings]) == request
    hash(request)  # still usable as a key, like a request with LoRAs


@pytest.mark.timeout(30)
def test_control_units_need_the_controlnet_list() -> None:
    with pytest.raises(InvalidRequest) as caught:
        req(controls=[unit()]).validate({DEMO})
    assert caught.value.code == "unknown_controlnet"
