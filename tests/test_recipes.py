"""The cached chapter-00 adapter: keyed by recipe and versions, trained once, then reused."""

from __future__ import annotations

import json

from helpers import recipes


def test_the_cache_folder_changes_with_the_recipe_and_not_otherwise():
    same = recipes.adapter_dir()
    assert recipes.adapter_dir() == same
    changed = dict(recipes.YODA_RECIPE, max_steps=recipes.YODA_RECIPE["max_steps"] + 1)
    assert recipes.adapter_dir(changed) != same
    assert same.name.startswith("yoda-")


def test_a_tiny_recipe_trains_once_saves_an_adapter_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    tiny = dict(recipes.YODA_RECIPE, model="tiny-random-smollm2", quantization=None, max_steps=2)
    folder = recipes.yoda_adapter(tiny)
    assert folder.parent == tmp_path / "adapters"
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "run").exists(), "the trainer's checkpoints are not kept"
    record = json.loads((folder / "recipe.json").read_text())
    assert record["recipe"] == tiny and record["train_loss"] > 0

    calls = []
    monkeypatch.setattr(recipes, "train_yoda_adapter", lambda *a: calls.append(a))
    assert recipes.yoda_adapter(tiny) == folder
    assert calls == [], "a finished adapter is reused, not trained again"
