"""The chapter-00 Yoda adapter, trained once and kept in the course cache.

Later chapters (evaluation, deployment, preference tuning, LitGPT) start from "the
adapter chapter 00 trained". Chapters run in any order and on their own (a learner may
open chapter 08 first), so none of them may read chapter 00's ``outputs/``. Instead
``yoda_adapter()`` trains the same recipe the first time it is asked (about a minute on
2 CPU cores with native bf16, a few minutes without), saves the adapter under
``<cache>/adapters/``, and returns that folder on every later call.

The folder's name carries a hash of the recipe and of the library versions, so a
changed recipe or a new trl/peft/transformers trains a fresh adapter instead of reusing
a stale one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .models import DEFAULT_MODEL, _write_atomically, cache_dir

YODA_RECIPE = {
    "model": DEFAULT_MODEL,
    "quantization": "4bit",
    "lora_r": 16,
    "max_steps": 90,
    "per_device_train_batch_size": 4,
    "learning_rate": 2e-3,
    "seed": 0,
}
"""Chapter 00's recipe (its cells write these values in the open), minus the eval split."""


def _library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }


def recipe_key(recipe: dict | None = None) -> str:
    """A short hash of the recipe and the library versions: the cache folder's suffix."""
    payload = {"recipe": recipe or YODA_RECIPE, "versions": _library_versions()}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:12]


def adapter_dir(recipe: dict | None = None) -> Path:
    """Where the adapter of this recipe lives in the cache (it may not exist yet)."""
    return cache_dir() / "adapters" / f"yoda-{recipe_key(recipe)}"


def train_yoda_adapter(out: Path, recipe: dict | None = None) -> None:
    """Train chapter 00's recipe on the Yoda training split and save the adapter in ``out``."""
    from . import data, models, training

    recipe = dict(recipe or YODA_RECIPE)
    model, tokenizer = models.load_model(recipe["model"], quantization=recipe["quantization"])
    train_set = data.load_dataset("yoda")["train"]
    args = training.sft_config(
        str(out / "run"),
        max_steps=recipe["max_steps"],
        per_device_train_batch_size=recipe["per_device_train_batch_size"],
        learning_rate=recipe["learning_rate"],
        seed=recipe["seed"],
    )
    trainer = training.build_trainer(
        model,
        tokenizer,
        train_set,
        args,
        peft_config=training.lora_config(r=recipe["lora_r"]),
    )
    result = trainer.train()
    training.save_adapter(trainer, str(out))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    record = {
        "recipe": recipe,
        "versions": _library_versions(),
        "train_loss": result.training_loss,
        "logged_losses": losses,
    }
    (out / "recipe.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(out / "run", ignore_errors=True)


def yoda_adapter(recipe: dict | None = None) -> Path:
    """The folder of chapter 00's trained adapter: trained on the first call, then reused.

    Load it with ``helpers.load_adapter(base_model, str(path))`` on a 4-bit base (as it
    was trained) or on the fp32 base (to merge it).
    """
    target = adapter_dir(recipe)
    if (target / "COMPLETE").exists() and (target / "adapter_model.safetensors").exists():
        return target
    return _write_atomically(target, lambda out: train_yoda_adapter(out, recipe))
