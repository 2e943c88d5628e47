"""Presets without a server: how a recipe makes its prompt and size, and that listing them needs no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from inference.demo_model import DEMO_CONTROLNET_NAME, export_controlnet_single_file
from inference.models import CONTROLNET_FOLDER
from server.presets import Recipe, problems

ROOT = Path(__file__).resolve().parents[2]


def recipe(**changes) -> Recipe:
    values = dict(checkpoint="m", loras=(), controls=({"model": "c"},), prompt_template="{subject}, ink drawing",
                  negative_prompt="", strength=0.6, steps=20, guidance=7.0, sampler="Euler a", side_px=None)
    return Recipe(**{**values, **changes})


def test_the_users_words_go_into_the_template():
    assert recipe().prompt("a red fox") == "a red fox, ink drawing"
    assert recipe().prompt("") == "ink drawing", "an empty subject leaves no stray comma"
    assert recipe(prompt_template="portrait of {subject}, oil").prompt("  ") == "portrait of, oil"
    assert recipe(prompt_template="game art").prompt("a knight") == "game art, a knight", "appended without {subject}"
    assert recipe(prompt_template="{a|b} style, {subject}").prompt("x") == "{a|b} style, x", "other braces stay"


def test_the_size_keeps_the_photos_aspect_at_the_models_area():
    assert recipe().size(4000, 3000, 512) == (592, 440)
    assert recipe().size(3000, 4000, 1024) == (1184, 888)[::-1]
    assert recipe(side_px=256).size(4000, 3000, 1024) == (296, 224)
    width, height = recipe().size(4000, 1000, 1024)
    assert width <= 2048 and height >= 64 and width % 8 == 0 and height % 8 == 0


def test_a_txt2img_recipe_sends_the_photo_to_the_controlnet_only():
    request = recipe(strength=None).request(subject="x", width=64, height=64, photo=b"photo")
    assert request.kind == "txt2img" and request.init_image is None and request.controls[0].image == b"photo"
    request = recipe().request(subject="x", width=64, height=64, photo=b"photo")
    assert request.kind == "img2img" and request.init_image == b"photo" and request.strength == 0.6


def test_listing_presets_in_a_web_process_loads_no_torch(demo_models_dir, tmp_path):
    """A single-file ControlNet is read for its family from its header; numpy suffices, torch is not imported."""
    models = tmp_path / "models"
    (models / CONTROLNET_FOLDER).mkdir(parents=True)
    export_controlnet_single_file(demo_models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME,
                                  models / CONTROLNET_FOLDER / "single-control.safetensors")
    script = textwrap.dedent(f"""
        import sys
        import server.app
        from inference.models import ModelRegistry
        from server.presets import Recipe, problems
        registry = ModelRegistry({str(models)!r})
        assert registry.controlnet_families() == {{"single-control": "sd1"}}, registry.refused
        recipe = Recipe("m", (), ({{"model": "single-control"}},), "", "", None, 1, 1.0, "Euler", None)
        print([p["code"] for p in problems(recipe, registry)])
        heavy = sorted(name for name in ("torch", "diffusers", "cv2") if name in sys.modules)
        assert not heavy, heavy
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['missing_model']"


def test_problems_name_every_missing_model(tmp_path):
    from inference.models import ModelRegistry

    found = problems(recipe(loras=(("l", 1.0),)), ModelRegistry(tmp_path))
    assert [(p["code"], p["name"]) for p in found] == [("missing_model", "m"), ("missing_lora", "l"),
                                                       ("missing_controlnet", "c")]
