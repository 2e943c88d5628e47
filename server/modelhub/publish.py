"""Published checkpoints, LoRAs and ControlNets become loadable: a link in the models folder to the stored blob.

The engine's registry scans `<models>/` for single-file checkpoints, `<models>/loras/` for LoRAs
and `<models>/controlnets/` for ControlNets, so a link is all it takes for a hub file to appear in
the engine's lists (the Generate page's picker, a preset's ControlNet units); the blob is not
copied. These functions block: call them through an executor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from inference.models import CONTROLNET_FOLDER, LORA_FOLDER

LINKED_KINDS = ("checkpoint", "lora", "controlnet")
KIND_FOLDER = {"lora": LORA_FOLDER, "controlnet": CONTROLNET_FOLDER}  # checkpoints: the models folder itself
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 120  # the jobs table keeps model names in 128 characters


def engine_name(owner: str, slug: str, version: str, filename: str) -> str:
    """The name the engine and the picker know a hub file by."""
    stem = filename.rsplit(".", 1)[0]
    return UNSAFE.sub("-", f"{owner}--{slug}--{version}--{stem}")[:MAX_NAME_CHARS]


class ModelLinks:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    def _path(self, name: str, kind: str) -> Path:
        return self.models_dir / KIND_FOLDER.get(kind, "") / f"{name}.safetensors"

    def link(self, name: str, kind: str, blob: Path) -> None:
        if kind not in LINKED_KINDS:
            return
        path = self._path(name, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.unlink(missing_ok=True)
        os.symlink(Path(blob).resolve(), temp)
        os.replace(temp, path)  # atomic: a scan never sees a half-made link

    def unlink(self, name: str, kind: str) -> None:
        if kind in LINKED_KINDS:
            self._path(name, kind).unlink(missing_ok=True)
