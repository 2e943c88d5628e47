"""CLIP tokenizers shared by the checkpoints that ship the same tokenizer files.

Building a CLIP tokenizer (transformers turns vocab.json and merges.txt into a Rust tokenizer)
was half of an SD 1.5 checkpoint's cold load (bench/engine.py --load-only: ~0.27 of 0.54 s, fp16,
page cache warm), and nearly every checkpoint of a family carries byte-identical files. So one
instance is built per distinct set of files and handed to every pipeline that has them.

Until now a tokenizer belonged to one model, which one device thread uses at a time; shared, two
device threads may encode prompts for two models at once. A fast tokenizer changes its own
padding and truncation settings on calls that ask for other ones (diffusers asks for two kinds per
prompt), so the shared set comes with a lock that whoever encodes a prompt holds
(`inference.pipelines.encode_prompt`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from transformers import CLIPTokenizer

# Distinct tokenizer sets kept (a few MB each); a deployment has one or two per model family.
MAX_SETS = 8


@dataclass(frozen=True)
class SharedTokenizers:
    """Pipeline components by name (`tokenizer`, `tokenizer_2`) and the lock their users hold."""

    components: dict[str, CLIPTokenizer]
    lock: threading.Lock


_sets: OrderedDict[str, SharedTokenizers] = OrderedDict()
_sets_lock = threading.Lock()


def shared_tokenizers(root: Path, names: tuple[str, ...]) -> SharedTokenizers | None:
    """The tokenizers in ``root/<name>`` for each name, built once per distinct content; None when a
    folder is missing (the pipeline loader then reports what is wrong with the model)."""
    folders = [root / name for name in names]
    if not all(folder.is_dir() for folder in folders):
        return None
    key = _digest(folders)
    with _sets_lock:
        known = _sets.get(key)
        if known is not None:
            _sets.move_to_end(key)
            return known
    built = SharedTokenizers(
        {name: CLIPTokenizer.from_pretrained(str(folder), local_files_only=True) for name, folder in zip(names, folders)},
        threading.Lock(),
    )
    with _sets_lock:
        kept = _sets.setdefault(key, built)  # a load that raced this one keeps its set: one instance per content
        while len(_sets) > MAX_SETS:
            _sets.popitem(last=False)
        return kept


def _digest(folders: list[Path]) -> str:
    """Of every file's name and bytes (about 1.5 MB for CLIP's: a few milliseconds)."""
    digest = hashlib.blake2b(digest_size=16)
    for index, folder in enumerate(folders):
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            digest.update(f"{index}/{path.name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
