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


def test_the_cache_key_covers_what_decides_the_trained_adapter(monkeypatch):
    """A new bitsandbytes, a new model conversion or changed loss code trains afresh."""
    same = recipes.adapter_dir()
    made = recipes.provenance()
    assert set(made["versions"]) >= {"torch", "transformers", "trl", "peft", "bitsandbytes"}
    assert "training.py" in made["sources"] and made["conversion"] == recipes.CONVERSION_VERSION
    versions = recipes._library_versions()
    monkeypatch.setattr(recipes, "_library_versions", lambda: dict(versions, bitsandbytes="0.0.1"))
    assert recipes.adapter_dir() != same
    monkeypatch.undo()
    monkeypatch.setattr(recipes, "CONVERSION_VERSION", recipes.CONVERSION_VERSION + 1)
    assert recipes.adapter_dir() != same
    monkeypatch.undo()
    real_read = recipes.Path.read_bytes

    def edited(path):
        data = real_read(path)
        return data + b"# edited" if path.name == "training.py" else data

    monkeypatch.setattr(recipes.Path, "read_bytes", edited)
    assert recipes.adapter_dir() != same


def test_a_tiny_recipe_trains_once_saves_an_adapter_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    tiny = dict(recipes.YODA_RECIPE, model="tiny-random-smollm2", quantization=None, max_steps=2)
    folder = recipes.yoda_adapter(tiny)
    assert folder.parent == tmp_path / "adapters"
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "run").exists(), "the trainer's checkpoints are not kept"
    record = json.loads((folder / "recipe.json").read_text())
    assert record["recipe"] == tiny and record["train_loss"] > 0
    assert record["sources"] == recipes.provenance(tiny)["sources"]

    calls = []
    monkeypatch.setattr(recipes, "train_yoda_adapter", lambda *a: calls.append(a))
    assert recipes.yoda_adapter(tiny) == folder
    assert calls == [], "a finished adapter is reused, not trained again"


def test_the_cached_recipe_is_the_one_chapter_00_writes_in_the_open():
    """Chapters 07, 08 and 10 start from this adapter as "chapter 00's": same values."""
    import ast

    import nbformat

    from helpers import repo

    chapter = nbformat.read(repo.repo_root() / "notebooks" / "00_tldr.ipynb", as_version=4)
    source = "\n".join(c.source for c in chapter.cells if c.cell_type == "code")
    calls = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            calls.setdefault(node.func.attr, []).append((node.args, keywords))

    def literal(node):
        return ast.literal_eval(node)

    recipe = recipes.YODA_RECIPE
    (args, keywords), *_ = calls["sft_config"]
    assert literal(keywords["max_steps"]) == recipe["max_steps"]
    assert literal(keywords["per_device_train_batch_size"]) == recipe["per_device_train_batch_size"]
    assert literal(keywords["learning_rate"]) == recipe["learning_rate"]
    assert literal(keywords.get("seed", ast.Constant(0))) == recipe["seed"]
    (_, lora), *_ = calls["lora_config"]
    assert literal(lora["r"]) == recipe["lora_r"]
    (model_args, model_kw), *_ = calls["load_model"]
    assert literal(model_args[0]) == recipe["model"]
    assert literal(model_kw["quantization"]) == recipe["quantization"]
