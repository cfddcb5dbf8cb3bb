"""The course's shared code: what the chapter notebooks call.

Imports are lazy, so `import helpers` is instant and `python -m helpers.<module>`
works before the heavy libraries are loaded.
"""

from __future__ import annotations

import importlib
import logging
import warnings

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
    "yoda_adapter": "recipes",
}

__all__ = sorted(_EXPORTS)


class _DropKernelHubFetch(logging.Filter):
    """Drop bitsandbytes' note that it could not fetch a CPU kernel from the hub.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 tries to download a faster 4-bit matmul
    from the Hugging Face hub when it is imported, and logs a warning when it cannot
    (the course runs offline, without the optional `kernels` package). It then uses its
    own CPU implementation, which is what every other CPU runs. The note depends on the
    processor, so it would make a chapter's stored output differ from machine to machine.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
logging.getLogger(BITSANDBYTES_CPU_LOGGER).addFilter(_DropKernelHubFetch())

# peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5.23 renamed. The
# warning points into library code and asks nothing of the learner, and it carries the
# path of the installed transformers. Filtered on `import helpers` (not only when
# helpers.training is imported), because loading an adapter with peft's PeftModel triggers
# it too. Revisit when peft is upgraded (tests/test_helpers.py runs get_peft_model with
# warnings shown).
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)


def __getattr__(name: str):
    if name == "describe_hardware":
        return importlib.import_module(".hardware", __name__).describe
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return __all__
