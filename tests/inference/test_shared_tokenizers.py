"""Checkpoints whose tokenizer files are the same share one tokenizer (half of a cold load was building it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from inference.models import ModelRegistry
from inference.pipelines import encode_prompt, load_model
from inference.requests import GenerationRequest
from tests.inference.conftest import DEMO, EXTRA_MODELS, SINGLE, TINY_XL


def test_checkpoints_with_the_same_tokenizer_files_share_one_instance(registry: ModelRegistry) -> None:
    demo, copy, single = (load_model(registry.get(name)) for name in (DEMO, EXTRA_MODELS[0], SINGLE))
    tokenizer = demo.txt2img.tokenizer
    # A copied folder, and a single file whose config sidecar carries the same files.
    assert copy.txt2img.tokenizer is tokenizer and single.txt2img.tokenizer is tokenizer
    assert demo.img2img.tokenizer is tokenizer
    assert copy.prompt_lock is demo.prompt_lock  # held by whoever encodes a prompt with it
    xl, xl_again = load_model(registry.get(TINY_XL)), load_model(registry.get(TINY_XL))
    assert xl.txt2img.tokenizer is not tokenizer
    assert xl_again.txt2img.tokenizer_2 is xl.txt2img.tokenizer_2 and xl_again.prompt_lock is xl.prompt_lock


def test_other_tokenizer_files_get_their_own(registry: ModelRegistry, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(registry.get(DEMO).path, models / "edited")
    merges = models / "edited" / "tokenizer" / "merges.txt"
    merges.write_text("\n".join(merges.read_text().splitlines()[:-1]) + "\n")  # one merge fewer
    demo, edited = load_model(registry.get(DEMO)), load_model(ModelRegistry(models).get("edited"))
    assert edited.txt2img.tokenizer is not demo.txt2img.tokenizer and edited.prompt_lock is not demo.prompt_lock
    request = GenerationRequest(model="edited", prompt="a lighthouse at dusk", steps=2, width=64, height=64, seed=1)
    assert encode_prompt(edited, request, "cpu")["prompt_embeds"].shape[1] == 77
