"""What models exist on local disk: discovery, family detection, fingerprints.

Two layouts are recognised under the models folder (default `data/models/`):

* a diffusers folder (`<name>/model_index.json` plus component folders with
  `*.safetensors` weights);
* a single-file checkpoint `<name>.safetensors` in the original (LDM) layout. Its
  configs come from a sidecar `<name>.config/` folder when present (a non-standard
  architecture), else from the bundled `inference/configs/<family>/`.

ControlNets live in `<models>/controlnets/`, in either layout: a diffusers folder
(`<name>/config.json` + `diffusion_pytorch_model.safetensors`) or one `<name>.safetensors`
(original `control_model.*` keys or diffusers keys) whose config comes from a sidecar
`<name>.config/config.json` or the bundled `inference/configs/controlnet-<family>/`.
LoRAs are files in `<models>/loras/`.

Only safetensors are ever read: pickle checkpoints (`.ckpt`, `.pt`, `.bin`) can run code
on load, so they are listed as refused rather than loaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from safetensors import safe_open

from inference.errors import ModelLoadError

Family = Literal["sd1", "sd2", "sdxl"]
Layout = Literal["diffusers", "single_file"]

BUNDLED_CONFIGS = Path(__file__).parent / "configs"
BUNDLED_CONFIG_FOR_FAMILY: dict[str, str] = {"sd1": "sd15", "sdxl": "sdxl"}
SIDECAR_SUFFIX = ".config"
LORA_FOLDER = "loras"
CONTROLNET_FOLDER = "controlnets"
BUNDLED_CONTROLNET_CONFIG_FOR_FAMILY: dict[str, str] = {"sd1": "controlnet-sd15", "sdxl": "controlnet-sdxl"}
# Width of the text embedding a UNet's (or ControlNet's) cross-attention reads: it names the family.
CONTEXT_DIM_FAMILY: dict[int, Family] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
# Tensor names that only a ControlNet has: its hint encoder and its zero convolutions.
CONTROLNET_MARKERS = ("controlnet_cond_embedding.", "input_hint_block.", "zero_convs.", "controlnet_down_blocks.")
# Tensor names of SDXL's extra (pooled text + size) embedding, in diffusers and original layout.
SDXL_ADD_EMBEDDING_MARKERS = ("add_embedding.", "label_emb.")
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
# Native training resolution per family: the size used when a request leaves it out.
NATIVE_SIDE_PX: dict[str, int] = {"sd1": 512, "sd2": 768, "sdxl": 1024}
HASH_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    """A loadable model on disk. `fingerprint` changes when its files change."""

    name: str
    path: Path
    layout: Layout
    family: Family
    config_dir: Path | None  # for single files: where the component configs come from
    size_bytes: int
    fingerprint: str

    @property
    def native_side(self) -> int:
        return NATIVE_SIDE_PX[self.family]

    def weight_files(self) -> list[Path]:
        if self.layout == "single_file":
            return [self.path]
        return sorted(self.path.rglob("*.safetensors"))


def family_from_checkpoint_keys(keys: set[str] | list[str]) -> Family:
    """SDXL has two text encoders under `conditioner.embedders`; SD2 an OpenCLIP encoder."""
    keys = set(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        # A UNet without its text encoder: SD1 layout is the common case.
        return "sd1"
    raise ModelLoadError("checkpoint holds no Stable Diffusion UNet (`model.diffusion_model.*` keys)")


def family_from_diffusers_folder(folder: Path) -> Family:
    index = json.loads((folder / "model_index.json").read_text())
    if "XL" in index.get("_class_name", "") or "text_encoder_2" in index:
        return "sdxl"
    config = folder / "text_encoder" / "config.json"
    if config.exists() and json.loads(config.read_text()).get("hidden_size") == 1024:
        return "sd2"
    return "sd1"


def family_from_controlnet_config(config: dict) -> Family:
    """SDXL ControlNets take the pooled-text + size embedding; otherwise the cross-attention width says."""
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    width = config.get("cross_attention_dim")
    return CONTEXT_DIM_FAMILY.get(width, "sd1") if isinstance(width, int) else "sd1"


def family_from_controlnet_shapes(shapes: dict[str, list[int]]) -> Family:
    """The same rule read from a single file's tensor names and shapes (headers only)."""
    if any(marker in name for name in shapes for marker in SDXL_ADD_EMBEDDING_MARKERS):
        return "sdxl"
    for name, shape in shapes.items():
        if name.endswith("attn2.to_k.weight") and len(shape) == 2:
            return CONTEXT_DIM_FAMILY.get(shape[1], "sd1")
    return "sd1"


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class ModelRegistry:
    """Scans a models folder; `refresh()` rescans (cheap: headers only, no weights read)."""

    def __init__(self, models_dir: str | Path) -> None:
        self.models_dir = Path(models_dir)
        self._lock = threading.Lock()
        self._specs: dict[str, ModelSpec] = {}
        self._controlnets: dict[str, ModelSpec] = {}
        self.refused: dict[str, str] = {}  # name (controlnets/<name> for ControlNets) -> why it cannot be loaded
        self._hashes: dict[tuple[str, str], str] = {}
        self.refresh()

    def refresh(self) -> dict[str, ModelSpec]:
        """Rescan the folder (checkpoints and ControlNets) and return name -> checkpoint spec."""
        refused: dict[str, str] = {}
        specs = _scan(self.models_dir, self._inspect, refused, "")
        controlnets = _scan(self.models_dir / CONTROLNET_FOLDER, _inspect_controlnet, refused, CONTROLNET_FOLDER + "/")
        with self._lock:
            self._specs, self._controlnets, self.refused = specs, controlnets, refused
        return dict(specs)

    def _inspect(self, entry: Path) -> ModelSpec | None:
        if entry.is_dir() and not entry.name.endswith(SIDECAR_SUFFIX) and (entry / "model_index.json").exists():
            weights = sorted(entry.rglob("*.safetensors"))
            if not weights:
                raise ModelLoadError(f"{entry.name}: diffusers folder without .safetensors weights (pickle is refused)")
            return ModelSpec(
                name=entry.name,
                path=entry,
                layout="diffusers",
                family=family_from_diffusers_folder(entry),
                config_dir=None,
                size_bytes=sum(w.stat().st_size for w in weights),
                fingerprint=_fingerprint(weights),
            )
        if entry.is_file() and entry.suffix == ".safetensors":
            try:
                # framework="numpy": listing names needs no torch (a web process scans this folder too).
                with safe_open(str(entry), framework="numpy") as f:
                    keys = set(f.keys())
            except Exception as exc:  # safetensors raises its own SafetensorError on a bad header
                raise ModelLoadError(f"{entry.name}: unreadable safetensors header ({exc})") from None
            family = family_from_checkpoint_keys(keys)
            sidecar = entry.with_name(entry.stem + SIDECAR_SUFFIX)
            if sidecar.is_dir():
                config_dir = sidecar
            elif family in BUNDLED_CONFIG_FOR_FAMILY:
                config_dir = BUNDLED_CONFIGS / BUNDLED_CONFIG_FOR_FAMILY[family]
            else:
                raise ModelLoadError(
                    f"{entry.name}: no bundled config for family {family}; put a diffusers config folder "
                    f"beside it named {sidecar.name}"
                )
            return ModelSpec(
                name=entry.stem,
                path=entry,
                layout="single_file",
                family=family,
                config_dir=config_dir,
                size_bytes=entry.stat().st_size,
                fingerprint=_fingerprint([entry]),
            )
        if entry.is_file() and entry.suffix in PICKLE_SUFFIXES:
            raise ModelLoadError(f"{entry.name}: pickle checkpoints are refused; convert it to .safetensors")
        return None

    def lora_names(self) -> frozenset[str]:
        """LoRAs in `<models>/loras/` by stem (rescanned on each call: a directory listing, no reads)."""
        folder = self.models_dir / LORA_FOLDER
        if not folder.is_dir():
            return frozenset()
        return frozenset(p.stem for p in folder.iterdir() if p.suffix == ".safetensors" and p.is_file())

    def lora_path(self, name: str) -> Path:
        path = self.models_dir / LORA_FOLDER / f"{name}.safetensors"
        if "/" in name or not path.is_file():
            raise ModelLoadError(f"LoRA {name!r} is not in {self.models_dir / LORA_FOLDER}")
        return path

    def controlnet_families(self) -> dict[str, str]:
        """ControlNet name -> family, as of the last scan."""
        with self._lock:
            return {name: spec.family for name, spec in self._controlnets.items()}

    def controlnet_specs(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._controlnets.values())

    def controlnet(self, name: str) -> ModelSpec:
        with self._lock:
            try:
                return self._controlnets[name]
            except KeyError:
                raise ModelLoadError(f"ControlNet {name!r} is not in {self.models_dir / CONTROLNET_FOLDER}") from None

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._specs)

    def get(self, name: str) -> ModelSpec:
        with self._lock:
            try:
                return self._specs[name]
            except KeyError:
                raise ModelLoadError(f"model {name!r} is not in {self.models_dir}") from None

    def specs(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._specs.values())

    def short_hash(self, spec: ModelSpec) -> str:
        """A1111's 'Model hash' (AutoV2): the first 10 hex digits of the weights' sha256.

        Memoised per fingerprint; the first call reads the whole file, so call it off the loop.
        """
        key = (spec.name, spec.fingerprint)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        for path in spec.weight_files():
            with open(path, "rb") as f:
                while chunk := f.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
        value = digest.hexdigest()[:10]
        with self._lock:
            self._hashes[key] = value
        return value


def _scan(folder: Path, inspect: Callable[[Path], ModelSpec | None], refused: dict[str, str],
          prefix: str) -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            try:
                spec = inspect(entry)
            except ModelLoadError as exc:
                refused[prefix + entry.name] = str(exc)
                continue
            if spec is not None:
                specs[spec.name] = spec
    return specs


# The hint encoder's last convolution: its output width is the ControlNet's first block width, in either layout.
HINT_OUTPUT_WEIGHTS = ("controlnet_cond_embedding.conv_out.weight", "input_hint_block.14.weight")


def _hint_width(shapes: dict[str, list[int]]) -> int | None:
    return next((shape[0] for name, shape in shapes.items() if name.endswith(HINT_OUTPUT_WEIGHTS) and shape), None)


@functools.lru_cache(maxsize=8)
def _config_width(config_dir: Path) -> int:
    return int(json.loads((config_dir / "config.json").read_text())["block_out_channels"][0])


def _inspect_controlnet(entry: Path) -> ModelSpec | None:
    if entry.is_dir() and not entry.name.endswith(SIDECAR_SUFFIX) and (entry / "config.json").exists():
        weights = sorted(entry.glob("*.safetensors"))
        if not weights:
            raise ModelLoadError(f"{entry.name}: ControlNet folder without .safetensors weights (pickle is refused)")
        try:
            config = json.loads((entry / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{entry.name}: unreadable config.json ({exc})") from None
        return ModelSpec(name=entry.name, path=entry, layout="diffusers", family=family_from_controlnet_config(config),
                         config_dir=entry, size_bytes=sum(w.stat().st_size for w in weights),
                         fingerprint=_fingerprint(weights))
    if entry.is_file() and entry.suffix == ".safetensors":
        try:
            # framework="numpy": shapes need no torch (a web process lists ControlNets for the presets too).
            with safe_open(str(entry), framework="numpy") as f:
                shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}
        except Exception as exc:  # safetensors raises its own SafetensorError on a bad header
            raise ModelLoadError(f"{entry.name}: unreadable safetensors header ({exc})") from None
        if not any(marker in name for name in shapes for marker in CONTROLNET_MARKERS):
            raise ModelLoadError(f"{entry.name}: not a ControlNet (no hint encoder or zero convolutions)")
        family = family_from_controlnet_shapes(shapes)
        sidecar = entry.with_name(entry.stem + SIDECAR_SUFFIX)
        if (sidecar / "config.json").is_file():
            config_dir = sidecar
        elif family in BUNDLED_CONTROLNET_CONFIG_FOR_FAMILY:
            config_dir = BUNDLED_CONFIGS / BUNDLED_CONTROLNET_CONFIG_FOR_FAMILY[family]
            width, expected = _hint_width(shapes), _config_width(config_dir)
            if width is not None and width != expected:
                # Known now, from the header, rather than as a shape error when a job loads it.
                raise ModelLoadError(f"{entry.name}: not the standard {family} ControlNet architecture (its first "
                                     f"block is {width} wide, the standard one {expected}); put its config.json "
                                     f"in a folder beside it named {sidecar.name}")
        else:
            raise ModelLoadError(f"{entry.name}: no bundled ControlNet config for family {family}; put its "
                                 f"config.json in a folder beside it named {sidecar.name}")
        return ModelSpec(name=entry.stem, path=entry, layout="single_file", family=family, config_dir=config_dir,
                         size_bytes=entry.stat().st_size, fingerprint=_fingerprint([entry]))
    if entry.is_file() and entry.suffix in PICKLE_SUFFIXES:
        raise ModelLoadError(f"{entry.name}: pickle ControlNets are refused; convert it to .safetensors")
    return None
