"""Bad requests are refused before a worker sees them, with a reason that names the value."""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from inference.engine import Engine, EngineConfig
from inference.errors import InvalidRequest, UnknownModel
from inference.models import ModelRegistry
from inference.requests import GenerationRequest
from inference.screening import PromptScreen
from tests.inference.conftest import DEMO, png_bytes


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few-hundred-byte PNG whose header declares width x height pixels."""
    data = bytearray(png_bytes(8, 8))
    # IHDR starts at byte 8: length(4) "IHDR"(4) width(4) height(4) ...; fix its CRC after.
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


def req(**overrides) -> GenerationRequest:
    values = dict(model=DEMO, prompt="a cat", steps=2, width=64, height=64, seed=1)
    values.update(overrides)
    return GenerationRequest(**values)


BAD = [
    pytest.param(dict(model="no-such-model"), "unknown_model", "no-such-model", id="unknown-model"),
    pytest.param(dict(steps=0), "invalid_steps", "0", id="steps-0"),
    pytest.param(dict(steps=10_000), "invalid_steps", "10000", id="steps-10000"),
    pytest.param(dict(width=7, height=7), "invalid_size", "7", id="size-7x7"),
    pytest.param(dict(width=100_000, height=100_000), "invalid_size", "100000", id="size-100000"),
    pytest.param(dict(width=68), "invalid_size", "68", id="size-not-multiple-of-8"),
    pytest.param(dict(guidance=float("nan")), "invalid_guidance", "nan", id="guidance-nan"),
    pytest.param(dict(guidance=float("inf")), "invalid_guidance", "inf", id="guidance-inf"),
    pytest.param(dict(prompt="x" * 50_000), "prompt_too_long", "50000", id="prompt-50000-chars"),
    pytest.param(dict(kind="img2img", init_image=b"this is not an image"), "invalid_image", "init_image", id="not-image"),
    pytest.param(dict(kind="img2img", init_image=bomb_png()), "image_too_large", "10000000000 pixels", id="bomb"),
    pytest.param(dict(kind="img2img", init_image=None), "invalid_image", "required", id="img2img-without-image"),
    pytest.param(dict(kind="img2img", init_image=png_bytes(), strength=0.0), "invalid_strength", "0.0", id="strength-0"),
    pytest.param(dict(sampler="Turbo Magic"), "invalid_sampler", "Turbo Magic", id="unknown-sampler"),
    pytest.param(dict(batch=0), "invalid_batch", "0", id="batch-0"),
    pytest.param(dict(seed=-1), "invalid_seed", "-1", id="seed-negative"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("overrides", "code", "named"), BAD)
def test_bad_request_is_refused_with_a_reason(overrides: dict, code: str, named: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        req(**overrides).validate({DEMO})
    assert caught.value.code == code
    assert named in caught.value.message
    assert isinstance(caught.value, ValueError)


@pytest.mark.timeout(30)
def test_a_good_request_passes_and_gets_a_seed() -> None:
    request = req(seed=None, kind="img2img", init_image=png_bytes(), strength=0.5)
    request.validate({DEMO})
    assert request.with_seed().seed is not None
    assert req(seed=5).with_seed().seed == 5


@pytest.mark.timeout(30)
def test_unknown_model_is_its_own_error() -> None:
    with pytest.raises(UnknownModel):
        req(model="sd-none").validate({DEMO})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("overrides", "code", "named"), BAD + [
    pytest.param(dict(prompt="ＣＨＩＬＤ　PORN in a field"), "prompt_blocked", "child porn", id="blocked-fullwidth"),
    pytest.param(dict(prompt="一张儿童色情图片"), "prompt_blocked", "儿童色情", id="blocked-chinese"),
])
async def test_engine_refuses_before_any_worker_sees_it(
    registry: ModelRegistry, overrides: dict, code: str, named: str
) -> None:
    loads: list[str] = []

    def loader(spec, dtype):  # pragma: no cover - must never run
        loads.append(spec.name)
        raise AssertionError("a worker saw a bad request")

    engine = Engine(registry, EngineConfig(), screen=PromptScreen.from_file(), loader=loader).start()
    try:
        with pytest.raises(InvalidRequest) as caught:
            engine.submit(req(**overrides))
        assert caught.value.code == code
        assert named in caught.value.message
        assert engine.queue_depth == 0
        assert loads == []
    finally:
        await engine.aclose()


@pytest.mark.timeout(30)
def test_bomb_is_refused_from_the_header_alone() -> None:
    data = bomb_png(5_000, 5_000)  # under Pillow's own limit, over ours
    assert len(data) < 1_000  # the claim is in the header; nothing big was ever decoded
    with pytest.raises(InvalidRequest, match="5000x5000"):
        req(kind="img2img", init_image=data).validate({DEMO})


@pytest.mark.timeout(30)
def test_truncated_png_is_not_an_image() -> None:
    with pytest.raises(InvalidRequest) as caught:
        req(kind="img2img", init_image=png_bytes()[:20]).validate({DEMO})
    assert caught.value.code == "invalid_image"


@pytest.mark.timeout(30)
def test_gif_is_refused_as_a_format() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    with pytest.raises(InvalidRequest, match="GIF"):
        req(kind="img2img", init_image=out.getvalue()).validate({DEMO})
