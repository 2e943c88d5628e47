"""Fuzzing the two parsers that see hostile bytes first: WebSocket frames and safetensors headers.

Hypothesis with a fixed budget and derandomised, so every run tries the same inputs and the suite
stays fast; each parser may only ever raise its documented error.
"""

from __future__ import annotations

import io
import json
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.hub import frames
from server.modelhub.errors import InvalidModelFile, PickleRefused
from server.modelhub.safetensors_check import DTYPE_BYTES, CheckedFile, check_stream

FUZZ = settings(max_examples=1000, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- WebSocket frames --------------------------------------------------------------------------

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20,
)


def packed(value) -> bytes:  # type: ignore[no-untyped-def]
    return msgpack.packb(value, use_bin_type=True)


def mutated(data: bytes, cut: int, flip: int) -> bytes:
    """A packed frame cut short or with one byte changed: the shapes a broken client sends."""
    if not data:
        return data
    data = bytearray(data[: max(1, cut % (len(data) + 1))])
    data[flip % len(data)] ^= 0xFF
    return bytes(data)


hostile_frames = (
    st.binary(max_size=256)
    | msgpack_values.map(packed)
    | st.builds(mutated, msgpack_values.map(packed), st.integers(0, 300), st.integers(0, 300))
)


@FUZZ
@given(hostile_frames)
@example(b"\x91" * 100_000)  # arrays nested deeper than any stack
@example(b"\xdd\xff\xff\xff\xff")  # an array that claims four billion items and has none
@example(b"\xdf\xff\xff\xff\xff")  # the same for a map
@example(b"\xc7\xff\xff" + b"\x00")  # ext 8 claiming 255 bytes
@example(b"\xd6\xff\x00\x00\x00\x00")  # a timestamp (ext -1)
@example(b"\xd7\xff" + b"\xff" * 8)  # a timestamp with nanoseconds past a second
@example(b"\x81\x91\x00\x00")  # a map whose key is an array
@example(b"\x81\xc0\x00")  # a map whose key is nil
@example(b"\x81\xa1a\x00\xc1")  # trailing garbage after a good map
def test_frame_decoder_raises_only_bad_frame(data: bytes) -> None:
    try:
        frames.decode(data)
    except frames.BadFrame:
        pass


def test_a_good_frame_decodes() -> None:
    assert frames.decode(packed({"op": "ping", "ref": 1})) == {"op": "ping", "ref": 1}
    with pytest.raises(frames.BadFrame, match="msgpack"):
        frames.decode(b"\xc1")


# --- safetensors headers -----------------------------------------------------------------------

names = st.text(min_size=0, max_size=30) | st.sampled_from([
    "__metadata__", "model.diffusion_model.x.attn2.to_k.weight", "lora_unet_x.lora_down.weight", "emb_params",
    "clip_l", "clip_g", "encoder.conv_in.weight", "decoder.conv_in.weight", "control_model.input_hint_block.0"])
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=10)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
tensor_entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(sorted(DTYPE_BYTES)) | json_values,
    "shape": st.lists(st.integers(-2, 2**65), max_size=9) | json_values,
    "data_offsets": st.lists(st.integers(-2, 2**65), min_size=0, max_size=3) | json_values,
}) | json_values
headers = st.dictionaries(names, tensor_entries, max_size=6) | json_values


def header_only(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def safetensors_bytes(header: object, data: bytes, lie: int | None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if lie is None else lie) + text + data


# Shapes that stress a JSON decoder rather than a header check: deep nesting, long numbers.
json_stressors = st.one_of(
    st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 200_000).map(lambda depth: '{"a":' * depth + "0" + "}" * depth),
    st.integers(1, 20_000).map(lambda digits: '{"a": {"dtype": "F32", "shape": [' + "7" * digits + '], "data_offsets": [0, 4]}}'),
).map(lambda text: header_only(text.encode()))

hostile_files = (
    json_stressors
    | st.binary(max_size=512)
    | st.builds(safetensors_bytes, headers, st.binary(max_size=64), st.none() | st.integers(0, 2**64 - 1))
    | st.builds(lambda raw, data: struct.pack("<Q", len(raw)) + raw + data, st.binary(max_size=200),
                st.binary(max_size=32))
)


def check(data: bytes) -> CheckedFile:
    return check_stream(io.BytesIO(data), len(data))


@FUZZ
@given(hostile_files)
@example(header_only(b"[" * 100_000 + b"]" * 100_000))  # nesting deeper than the JSON decoder's stack
@example(header_only(b'{"a": ' + b"1" * 5_000 + b"}"))  # an integer past Python's 4,300-digit limit
@example(header_only(b'{"a": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}}'))
@example(header_only('{"\ud800": 1}'.encode("utf-8", "surrogatepass")))  # a lone surrogate
@example(header_only(b'{"a": 1, "a": 2}'))
def test_safetensors_check_raises_only_its_errors(data: bytes) -> None:
    try:
        check(data)
    except (InvalidModelFile, PickleRefused) as refused:
        assert refused.code and refused.message
