"""The course's shared code: what the chapter notebooks call.

Imports are lazy, so `import helpers` is instant and `python -m helpers.<module>`
works before the heavy libraries are loaded.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_model": "models",
    "prepare_model": "models",
    "MODELS": "models",
    "load_dataset": "data",
    "DATASETS": "data",
    "lora_config": "training",
    "sft_config": "training",
    "build_trainer": "training",
    "save_adapter": "training",
    "load_adapter": "training",
    "generate": "generation",
    "exact_match": "evaluation",
    "evaluate_task": "evaluation",
    "describe_hardware": "hardware",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "describe_hardware":
        return importlib.import_module(".hardware", __name__).describe
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return __all__
