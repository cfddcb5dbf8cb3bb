"""Chapter 05's "Without the course package" cell trains exactly like ``build_trainer``.

The test reads the cell (tagged ``plain-recipe``) from the notebook, runs it on the tiny
model for a few steps, and compares its logged losses with those of
``helpers.build_trainer(..., lm_head="trl", batch_order="random")`` given the same
settings. If either side changes (a course default, a library default, the cell), the
two drift apart and this test says so.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import transformers

import helpers
import helpers.data
from helpers import models

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_sfttrainer_and_memory.ipynb"
TAG = "plain-recipe"
LIBRARIES = {"torch", "transformers", "peft", "trl", "bitsandbytes", "datasets"}
TOLERANCE = 1e-4
"""Largest difference allowed between two logged losses (absolute): the two runs do the
same arithmetic in the same order, so they agree to float rounding (measured: equal)."""
STEPS = 4


def plain_cell_source() -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    found = [c for c in cells if TAG in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {TAG!r} in {NOTEBOOK.name}"
    return "".join(found[0]["source"])


def test_the_cell_uses_the_libraries_only():
    tree = ast.parse(plain_cell_source())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= LIBRARIES, f"the plain recipe imports {sorted(imported - LIBRARIES)}"
    assert "helpers" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert {"BitsAndBytesConfig", "LoraConfig", "SFTConfig", "SFTTrainer"} <= called


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The cell, run on the tiny model for STEPS steps: its namespace afterwards."""
    tmp = tmp_path_factory.mktemp("plain")
    namespace = {
        "model_dir": str(models.prepare_model("tiny-random-smollm2")),
        "data_file": str(helpers.data.HERE / "yoda_train.jsonl"),
        "recipe_dir": str(tmp / "run"),
        "recipe_steps": STEPS,
        "adapter_dir": str(tmp / "adapter"),
    }
    exec(compile(plain_cell_source(), "plain-recipe cell", "exec"), namespace)
    return namespace


def test_plain_recipe_logs_the_losses_of_build_trainer(plain_run, tmp_path):
    config, lora = plain_run["config"], plain_run["lora"]
    model, tokenizer = helpers.load_model("tiny-random-smollm2", quantization="4bit")
    args = helpers.sft_config(
        str(tmp_path),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        logging_steps=config.logging_steps,
    )
    ours, theirs = args.to_dict(), config.to_dict()
    differ = {k for k in ours if ours[k] != theirs.get(k)} - {"output_dir", "num_train_epochs"}
    assert not differ, f"SFTConfig fields that differ from helpers.sft_config: {sorted(differ)}"
    course_lora = helpers.lora_config(r=lora.r)

    rows = helpers.load_dataset("yoda", "train").select(range(len(plain_run["train"])))
    transformers.set_seed(0)  # the plain cell seeds before the trainer draws the adapters
    trainer = helpers.build_trainer(
        model,
        tokenizer,
        rows,
        args,
        peft_config=course_lora,
        lm_head="trl",
        batch_order="random",
    )
    trainer.train()
    course_losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    # peft resolves "all-linear" into module names on the model: compare what it made of both
    assert trainer.model.peft_config["default"].to_dict() == lora.to_dict()
    assert len(plain_run["plain_losses"]) == len(course_losses) == STEPS
    assert plain_run["plain_losses"] == pytest.approx(course_losses, abs=TOLERANCE)


def test_plain_recipe_saves_an_adapter(plain_run):
    saved = {p.name for p in Path(plain_run["adapter_dir"]).iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved
    assert plain_run["train"].column_names[-2:] == ["prompt", "completion"]
