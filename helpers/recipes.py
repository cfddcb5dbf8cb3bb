"""The chapter-00 Yoda adapter, trained once and kept in the course cache.

Later chapters (evaluation, deployment, preference tuning, LitGPT) start from "the
adapter chapter 00 trained". Chapters run in any order and on their own (a learner may
open chapter 08 first), so none of them may read chapter 00's ``outputs/``. Instead
``yoda_adapter()`` trains the same recipe the first time it is asked (about a minute on
2 CPU cores with native bf16, a few minutes without), saves the adapter under
``<cache>/adapters/``, and returns that folder on every later call.

The folder's name carries a hash of everything that decides the result (:func:`provenance`):
the recipe, the versions of the libraries that train it (bitsandbytes included: its 4-bit
kernels compute the forward pass), the version of the base model's conversion, and the
course's own code and data that the run goes through (the trainer builders and their loss,
the LoRA and 4-bit layouts, the training split). A change to any of them trains a fresh
adapter instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from . import data, models, training
from .models import CONVERSION_VERSION, DEFAULT_MODEL, cache_dir, write_atomically

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


TRAINING_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes")
"""The libraries whose versions decide what the adapter's training computes."""
_PACKAGE = Path(__file__).resolve().parent
SOURCES = (
    "training.py",  # SFTConfig/SFTTrainer builders and the scored-head loss
    "sampling.py",  # the bucketed batch order
    "lora.py",
    "bnb_cpu.py",  # the 4-bit layout kept trainable on the CPU
    "models.py",  # loading and the GGUF conversion
    "data/yoda_train.jsonl",
)
"""The course's files (relative to the package) that the training run goes through."""


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in TRAINING_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(recipe: dict | None = None) -> dict:
    """What decides the trained adapter: the recipe, the library versions, the model
    conversion's version and a hash of each course file the run goes through."""
    sources = {
        name: hashlib.sha256((_PACKAGE / name).read_bytes()).hexdigest()[:16] for name in SOURCES
    }
    return {
        "recipe": recipe or YODA_RECIPE,
        "versions": _library_versions(),
        "conversion": CONVERSION_VERSION,
        "sources": sources,
    }


def recipe_key(recipe: dict | None = None) -> str:
    """A short hash of :func:`provenance`: the cache folder's suffix."""
    payload = provenance(recipe)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:12]


def adapter_dir(recipe: dict | None = None) -> Path:
    """Where the adapter of this recipe lives in the cache (it may not exist yet)."""
    return cache_dir() / "adapters" / f"yoda-{recipe_key(recipe)}"


def yoda_trainer(
    model, tokenizer, train_set, output_dir, recipe: dict | None = None, callbacks=None, **overrides
):
    """The ``SFTTrainer`` of chapter 00's recipe (the cached adapter's and the benchmark's):
    `overrides` are further ``sft_config`` fields (the benchmark's step limit, no progress bar)."""
    recipe = dict(recipe or YODA_RECIPE)
    settings = {
        "max_steps": recipe["max_steps"],
        "per_device_train_batch_size": recipe["per_device_train_batch_size"],
        "learning_rate": recipe["learning_rate"],
        "seed": recipe["seed"],
        **overrides,
    }
    args = training.sft_config(str(output_dir), **settings)
    peft_config = training.lora_config(r=recipe["lora_r"])
    return training.build_trainer(
        model, tokenizer, train_set, args, peft_config=peft_config, callbacks=callbacks
    )


def train_yoda_adapter(out: Path, recipe: dict | None = None) -> None:
    """Train chapter 00's recipe on the Yoda training split and save the adapter in ``out``."""
    recipe = dict(recipe or YODA_RECIPE)
    model, tokenizer = models.load_model(recipe["model"], quantization=recipe["quantization"])
    train_set = data.load_dataset("yoda")["train"]
    trainer = yoda_trainer(model, tokenizer, train_set, out / "run", recipe)
    result = trainer.train()
    training.save_adapter(trainer, str(out))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    record = {
        **provenance(recipe),
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
    return write_atomically(target, lambda out: train_yoda_adapter(out, recipe))
