"""Checks a .safetensors file without trusting its header, then says what kind of model it holds.

The format: an 8-byte little-endian header length N, N bytes of JSON (tensor name ->
{dtype, shape, data_offsets: [begin, end]} plus an optional ``__metadata__`` of
strings), then the data area. Every claim in the header is checked against the file:
only the header is read, never the tensors. These functions block: run them in an executor.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from inference.models import CONTEXT_DIM_FAMILY, CONTROLNET_MARKERS, SDXL_ADD_EMBEDDING_MARKERS
from server.modelhub.errors import InvalidModelFile, PickleRefused

# Real headers are kilobytes to a few megabytes (an SDXL checkpoint: ~250 KB); this leaves room.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000
MAX_DIMS = 8
MAX_NAME_CHARS = 512
# __metadata__ is shown to people: bounded, and control characters removed.
MAX_METADATA_KEYS = 256
MAX_METADATA_VALUE_CHARS = 4096
MAX_METADATA_TOTAL_CHARS = 64 * 1024

DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}

CONVERT_HINT = (
    "Pickle files can run code when loaded, so only .safetensors is accepted. Convert it first, e.g. "
    "`python -c \"import torch; from safetensors.torch import save_file; "
    "sd = torch.load('model.ckpt', map_location='cpu', weights_only=True); "
    "save_file(sd.get('state_dict', sd), 'model.safetensors')\"` "
    "(or the converter in the kohya_ss / A1111 tools)."
)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

KINDS = ("checkpoint", "lora", "controlnet", "vae", "embedding")
BASES = ("sd1", "sd2", "sdxl")
# Width of the text embedding the UNet's cross-attention reads: it names the family (the engine's own table).
CONTEXT_DIM_BASE: dict[int, str] = dict(CONTEXT_DIM_FAMILY)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class CheckedFile:
    """What a valid file holds: its tensors, its metadata, and what it appears to be."""

    size_bytes: int
    header_bytes: int
    tensors: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    base: str = ""


def refuse_by_name(filename: str) -> None:
    """Refuse pickle formats and anything that is not .safetensors before a byte is stored."""
    lower = filename.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise PickleRefused(f"`{filename}` is a pickle checkpoint. {CONVERT_HINT}")
    if not lower.endswith(".safetensors"):
        raise InvalidModelFile(f"`{filename}`: only .safetensors files are accepted.", code="unsupported_file_type")


def check_file(path: str | Path) -> CheckedFile:
    """Validate the file at `path`; raises InvalidModelFile / PickleRefused naming the problem."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return check_stream(f, size)


def check_stream(f: BinaryIO, size: int) -> CheckedFile:
    if size == 0:
        raise InvalidModelFile("The file is empty.", code="empty_file")
    head = f.read(8)
    _refuse_foreign_formats(head)
    if len(head) < 8:
        raise InvalidModelFile(f"The file is truncated: {size} bytes, shorter than the 8-byte header length.",
                               code="truncated")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
        _refuse_non_safetensors(head, f.read(1))
    if header_len > MAX_HEADER_BYTES:
        raise InvalidModelFile(
            f"The header claims {header_len:,} bytes; at most {MAX_HEADER_BYTES:,} are accepted.",
            code="header_too_large")
    if 8 + header_len > size:
        raise InvalidModelFile(
            f"The header length ({header_len:,} bytes) runs past the end of the {size:,}-byte file "
            "(truncated upload?).", code="truncated")
    if header_len < 2:
        raise InvalidModelFile("The header is empty; it must be a JSON object.", code="bad_header")
    raw = f.read(header_len)
    header = _parse_json_object(raw)
    data_size = size - 8 - header_len
    metadata = _metadata(header.pop("__metadata__", None))
    tensors = _tensors(header, data_size)
    checked = CheckedFile(size_bytes=size, header_bytes=header_len, tensors=tensors, metadata=metadata)
    checked.kind, checked.base = detect_kind_and_base(tensors)
    return checked


def _refuse_non_safetensors(head: bytes, first_header_byte: bytes) -> None:
    """A header length that cannot be right and no JSON object after it: not a damaged safetensors file
    (whose header still starts with `{`) but another kind of file with the name, e.g. text renamed."""
    if first_header_byte == b"{":
        return
    what = "text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "something else"
    raise InvalidModelFile(
        f"This is not a safetensors file: it starts with {what} ({_shown(head.decode('latin-1'))!r}), where a "
        "safetensors file starts with the length of its header and then a JSON header.", code="not_safetensors")


def _refuse_foreign_formats(head: bytes) -> None:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        raise PickleRefused(
            "This is a zip archive, which is how PyTorch saves .ckpt/.pt files (pickle inside), "
            f"not a .safetensors file. {CONVERT_HINT}")
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise PickleRefused(f"This is a Python pickle renamed to .safetensors. {CONVERT_HINT}")


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise InvalidModelFile(f"The header names `{_shown(key)}` twice.", code="duplicate_tensor")
            seen[key] = value
        return seen

    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise InvalidModelFile("The header is not UTF-8 text, so not JSON.", code="bad_header") from None
    except json.JSONDecodeError as exc:
        raise InvalidModelFile(f"The header is not valid JSON ({exc.msg} at byte {exc.pos}).",
                               code="bad_header") from None
    except (ValueError, RecursionError) as exc:
        # Found by fuzzing: an integer past Python's 4,300-digit limit is a ValueError, and arrays or objects
        # nested thousands deep exhaust the decoder's stack. Neither is a header a real file has.
        raise InvalidModelFile(f"The header is not JSON a file would hold ({str(exc)[:80]}).",
                               code="bad_header") from None
    if not isinstance(value, dict):
        raise InvalidModelFile("The header must be a JSON object of tensors.", code="bad_header")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidModelFile("`__metadata__` must be an object of strings.", code="bad_metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidModelFile(f"`__metadata__` has {len(value)} entries; at most {MAX_METADATA_KEYS} are kept.",
                               code="bad_metadata")
    clean: dict[str, str] = {}
    total = 0
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidModelFile(f"`__metadata__.{_shown(key)}` must be a string.", code="bad_metadata")
        shown = sanitise_text(item)[:MAX_METADATA_VALUE_CHARS]
        total += len(shown) + len(key)
        if total > MAX_METADATA_TOTAL_CHARS:
            break  # the rest is dropped for display; the file itself keeps it
        clean[sanitise_text(key)[:MAX_NAME_CHARS]] = shown
    return clean


def sanitise_text(value: str) -> str:
    """Text from a file, safe to show: no control or bidi-override characters."""
    return CONTROL_CHARS.sub("", value)


def _shown(name: str) -> str:
    return sanitise_text(name)[:80]


def _tensors(header: dict[str, Any], data_size: int) -> list[TensorInfo]:
    if len(header) > MAX_TENSORS:
        raise InvalidModelFile(f"The header lists {len(header):,} tensors; at most {MAX_TENSORS:,} are accepted.",
                               code="bad_header")
    tensors = [_tensor(name, entry, data_size) for name, entry in header.items()]
    if not tensors:
        raise InvalidModelFile("The file holds no tensors.", code="no_tensors")
    ordered = sorted(tensors, key=lambda t: (t.begin, t.end))
    position = 0
    for tensor in ordered:
        if tensor.begin < position:
            raise InvalidModelFile(
                f"Tensor `{_shown(tensor.name)}` starts at byte {tensor.begin:,}, inside the previous tensor "
                f"(which ends at {position:,}): spans overlap.", code="overlapping_spans")
        if tensor.begin > position:
            raise InvalidModelFile(
                f"Tensor `{_shown(tensor.name)}` starts at byte {tensor.begin:,} but the previous one ends at "
                f"{position:,}: the data must be contiguous from 0.", code="gap_in_data")
        position = tensor.end
    if position < data_size:
        raise InvalidModelFile(
            f"{data_size - position:,} bytes follow the last tensor (data area {data_size:,} bytes, tensors "
            f"end at {position:,}).", code="trailing_bytes")
    return tensors


def _tensor(name: str, entry: Any, data_size: int) -> TensorInfo:
    shown = _shown(name)
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidModelFile(f"Tensor name `{shown}` is empty or longer than {MAX_NAME_CHARS} characters.",
                               code="bad_tensor")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise InvalidModelFile(f"Tensor `{shown}` must have exactly `dtype`, `shape` and `data_offsets`.",
                               code="bad_tensor")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise InvalidModelFile(f"Tensor `{shown}` has unknown dtype {str(dtype)[:20]!r}.", code="unknown_dtype")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(type(d) is int and 0 <= d < 2**63 for d in shape)):
        raise InvalidModelFile(f"Tensor `{shown}` has an invalid shape (a list of at most {MAX_DIMS} "
                               "non-negative integers).", code="bad_shape")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and 0 <= o < 2**63 for o in offsets)):
        raise InvalidModelFile(f"Tensor `{shown}` has invalid `data_offsets` (two non-negative integers).",
                               code="bad_offsets")
    begin, end = offsets
    if end < begin:
        raise InvalidModelFile(f"Tensor `{shown}` ends (byte {end:,}) before it begins ({begin:,}).",
                               code="out_of_order_span")
    if end > data_size:
        raise InvalidModelFile(
            f"Tensor `{shown}` ends at byte {end:,}, past the {data_size:,}-byte data area (truncated file?).",
            code="span_outside_data")
    # Python integers do not overflow, and the product is compared before it is used for anything.
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    if nbytes != end - begin:
        raise InvalidModelFile(
            f"Tensor `{shown}`: shape {shape} of {dtype} is {nbytes:,} bytes but its span is {end - begin:,}.",
            code="shape_mismatch")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def detect_kind_and_base(tensors: list[TensorInfo]) -> tuple[str, str]:
    """What the tensor names and shapes say: (kind, base), "" where they do not tell."""
    names = {t.name for t in tensors}
    by_name = {t.name: t for t in tensors}

    def any_has(*parts: str) -> bool:
        return any(part in name for name in names for part in parts)

    if any_has("lora_up", "lora_down", "lora_A.", "lora_B.", "lora.up.", "lora.down.", "lora_te", "lora_unet"):
        return "lora", _lora_base(tensors, names)
    if any_has(*CONTROLNET_MARKERS):
        # SDXL ControlNets carry SDXL's size + pooled-text embedding, as its UNet does.
        return "controlnet", "sdxl" if any_has(*SDXL_ADD_EMBEDDING_MARKERS) else _context_base(tensors)
    if "emb_params" in names or "string_to_param.*" in names or any_has("string_to_param"):
        widths = {t.shape[-1] for t in tensors if t.shape}
        return "embedding", {768: "sd1", 1024: "sd2"}.get(next(iter(widths)), "") if len(widths) == 1 else ""
    if {"clip_l", "clip_g"} <= names:
        return "embedding", "sdxl"
    if any(n.startswith("model.diffusion_model.") for n in names) or any_has("time_embedding.", "time_embed."):
        base = _context_base(tensors)
        if any(n.startswith("conditioner.embedders.1.") for n in names) or any_has("add_embedding.", "label_emb."):
            base = "sdxl"
        return "checkpoint", base
    if any_has("decoder.conv_in", "first_stage_model.decoder") and any_has("encoder.conv_in"):
        return "vae", ""
    if len(tensors) <= 4 and all(len(t.shape) == 2 for t in tensors) and tensors:
        # A bare textual-inversion vector: a few [tokens, width] tensors.
        width = by_name[next(iter(names))].shape[-1]
        if width in (768, 1024):
            return "embedding", {768: "sd1", 1024: "sd2"}[width]
    return "", ""


def _context_base(tensors: list[TensorInfo]) -> str:
    for t in tensors:
        if t.name.endswith("attn2.to_k.weight") and len(t.shape) == 2:
            return CONTEXT_DIM_BASE.get(t.shape[1], "")
    return ""


def _lora_base(tensors: list[TensorInfo], names: set[str]) -> str:
    if any("lora_te2_" in n or "text_encoder_2" in n for n in names):
        return "sdxl"
    for t in tensors:
        low = t.name.lower()
        if "attn2" in low and "to_k" in low and ("lora_down" in low or "lora_a" in low or "lora.down" in low):
            if len(t.shape) == 2:
                return CONTEXT_DIM_BASE.get(t.shape[1], "")
    return ""
