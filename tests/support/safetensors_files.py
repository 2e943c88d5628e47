"""Hand-made .safetensors bytes, good and bad, for the hub's tests."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from io import BytesIO

import numpy as np
from safetensors.numpy import save


def raw(header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A file from a header (dict or raw bytes) and a data area, with an optional lying length."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def tiny_lora(rank: int = 2, context: int = 768, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    prefix = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return save({
        f"{prefix}.lora_down.weight": rng.standard_normal((rank, context), dtype=np.float32),
        f"{prefix}.lora_up.weight": rng.standard_normal((320, rank), dtype=np.float32),
        f"{prefix}.alpha": np.array(float(rank), dtype=np.float32),
    }, metadata={"ss_network_dim": str(rank), "note": "made\x1b[31m for tests\u202e"})


def small_model(size_bytes: int = 4096, seed: int = 1) -> bytes:
    """A valid file of roughly `size_bytes`, for upload and download tests."""
    rng = np.random.default_rng(seed)
    count = max(1, size_bytes // 4)
    return save({"model.diffusion_model.input_blocks.0.0.weight": rng.standard_normal(count, dtype=np.float32)})


def two_tensors(offsets_a: list[int], offsets_b: list[int], data_len: int) -> bytes:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": offsets_a},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": offsets_b},
    }
    return raw(header, b"\0" * data_len)


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Name -> (bytes, the error code they must earn)."""
    good = small_model(64)
    one = {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}))
    return {
        "truncated": (good[: len(good) - 10], "span_outside_data"),
        "truncated_in_length": (good[:5], "truncated"),
        "header_length_past_end": (raw(one, b"\0" * 16, length=10_000), "truncated"),
        "header_of_100_mb": (struct.pack("<Q", 100 * 1024 * 1024) + b"{" + b" " * 100, "header_too_large"),
        "text_renamed": (b"# My LoRA\nTrained on 40 photos of my cat.\n" * 4, "not_safetensors"),
        "header_not_json": (raw(b"this is not json at all", b""), "bad_header"),
        "header_json_array": (raw(b"[1, 2, 3]", b""), "bad_header"),
        "unknown_dtype": (raw({"t": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
                          "unknown_dtype"),
        "shape_mismatch": (raw({"t": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, b"\0" * 16),
                           "shape_mismatch"),
        "overlapping_spans": (two_tensors([0, 8], [4, 12], 12), "overlapping_spans"),
        "out_of_order_span": (raw({"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8),
                              "out_of_order_span"),
        "gap": (two_tensors([0, 8], [12, 20], 20), "gap_in_data"),
        "trailing_bytes": (raw(one, b"\0" * 20), "trailing_bytes"),
        "pickle_renamed": (pickle.dumps({"state_dict": {"w": [1.0, 2.0]}}, protocol=4), "pickle_refused"),
        "zip": (buf.getvalue(), "pickle_refused"),
        "empty": (b"", "empty_file"),
        "huge_shape_overflow": (raw({"t": {"dtype": "F64", "shape": [2**62, 2**62], "data_offsets": [0, 16]}},
                                    b"\0" * 16), "shape_mismatch"),
        "duplicate_names": (raw(b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                b'"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
                            "duplicate_tensor"),
        "metadata_not_strings": (raw({"__metadata__": {"a": 1}, **one}, b"\0" * 16), "bad_metadata"),
    }
