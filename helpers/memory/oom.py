"""Turn an out-of-memory error into advice, ranked by how much each change saves.

    with helpers.memory.explain_oom(trainer):
        trainer.train()

If training runs out of memory, ``explain_oom`` re-raises the error as a
:class:`TrainingOutOfMemory` whose message lists what would help most, each with the
bytes it saves according to :func:`~helpers.memory.estimate.estimate_training_memory`,
for example::

    out of memory: CUDA out of memory. Tried to allocate 1.50 GiB ...
    predicted peak for these settings: 9.71 GB. What would help, largest saving first:
      1. turn on gradient checkpointing: -5.32 GB (predicted peak 4.39 GB)
      2. halve the batch size to 4 and accumulate 2 micro-batches: -2.66 GB ...

Savings and peaks are those of the memory the process needs as the operating system (or,
on CUDA, the GPU driver) counts it, ``MemoryEstimate.process_memory``: what runs out is
that, not the live tensors alone. The device is CUDA for ``torch.OutOfMemoryError``, else
the CPU.

It recognises CUDA's ``torch.OutOfMemoryError`` and the CPU's failures to allocate
(a ``RuntimeError`` from PyTorch's ``DefaultCPUAllocator``, "can't allocate memory",
or Python's ``MemoryError``); any other error passes through untouched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from .estimate import MemoryEstimate, estimate_training_memory

OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "defaultcpuallocator",
    "not enough memory",
)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA OOM, a CPU allocation failure, or ``MemoryError``."""
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return any(marker in text for marker in OOM_MARKERS)
    return False


@dataclass(frozen=True)
class Advice:
    """One change, and what the estimator says it saves of the process's memory on `device`."""

    change: str
    saved_bytes: int
    estimate: MemoryEstimate
    note: str = ""
    device: str = "cpu"

    def __str__(self) -> str:
        note = f"; {self.note}" if self.note else ""
        process = self.estimate.process_memory(self.device)
        return (
            f"{self.change}: -{self.saved_bytes / 1e9:.2f} GB "
            f"({process.label} {process.predicted / 1e9:.2f} GB{note})"
        )


def advise(model_or_config: Any, device: str = "cpu", **settings: Any) -> list[Advice]:
    """Changes that lower the predicted process memory on `device`, largest saving first.

    `settings` are the keyword arguments of ``estimate_training_memory``.
    """
    base = estimate_training_memory(model_or_config, **settings)
    base_bytes = base.process_memory(device).predicted
    s = dict(base.settings)
    s.pop("moment", None)
    candidates: list[tuple[str, dict[str, Any], str]] = []
    if not s["gradient_checkpointing"]:
        candidates.append(
            (
                "turn on gradient checkpointing",
                {"gradient_checkpointing": True},
                "about a third more compute",
            )
        )
    if s["batch_size"] > 1:
        half = s["batch_size"] // 2
        steps = s["gradient_accumulation_steps"] * 2
        candidates.append(
            (
                f"halve the batch size to {half} and accumulate {steps} micro-batches",
                {"batch_size": half, "gradient_accumulation_steps": steps},
                "same effective batch",
            )
        )
    if s["lora_rank"] is None:
        candidates.append(
            ("train LoRA adapters (r=16) instead of every weight", {"lora_rank": 16}, "")
        )
    elif s["quantization"] is None:
        candidates.append(
            ("load the frozen base model in 4 bits (QLoRA)", {"quantization": "4bit"}, "")
        )
    if s["attn_implementation"] == "eager":
        candidates.append(("use SDPA attention", {"attn_implementation": "sdpa"}, ""))
    if s["mixed_precision"] is not None and s["lora_rank"] is not None:
        candidates.append(
            (
                "turn mixed precision off",
                {"mixed_precision": None},
                "autocast keeps 16-bit copies of the frozen weights",
            )
        )
    if s["dtype"] == "fp32" and s["quantization"] is None and s["mixed_precision"] is None:
        if s["lora_rank"] is None:
            # Not bf16 weights: an update smaller than a bf16 weight's spacing is lost
            # (chapter 01), so full fine-tuning keeps fp32 master weights.
            candidates.append(
                (
                    "train with bf16 autocast (mixed precision, fp32 master weights)",
                    {"mixed_precision": "bf16"},
                    "only where bf16 is native",
                )
            )
        else:
            # The base model is frozen under LoRA: its weights are never updated, and the
            # adapters that train stay fp32.
            candidates.append(
                (
                    "load the frozen base weights in bf16 (the LoRA adapters stay fp32)",
                    {"dtype": "bf16"},
                    "only where bf16 is native",
                )
            )
    if s["seq_len"] > 64:
        candidates.append(
            (
                f"cut max_length to {s['seq_len'] // 2}",
                {"seq_len": s["seq_len"] // 2},
                "longer examples get truncated",
            )
        )
    advice = []
    for change, update, note in candidates:
        try:
            new = estimate_training_memory(model_or_config, **{**s, **update})
        except ValueError:
            continue
        saved = base_bytes - new.process_memory(device).predicted
        if saved > 0:
            advice.append(Advice(change, saved, new, note, device))
    advice.sort(key=lambda a: -a.saved_bytes)
    return advice


class TrainingOutOfMemory(MemoryError):
    """An out-of-memory error, with ranked advice in its message (the original is its cause)."""

    def __init__(self, message: str, advice: list[Advice], estimate: MemoryEstimate | None):
        super().__init__(message)
        self.advice = advice
        self.estimate = estimate


def settings_from_trainer(trainer) -> tuple[Any, dict[str, Any]]:
    """(model, estimator settings) read from a transformers/trl trainer and its model."""
    args, model = trainer.args, trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    peft = getattr(model, "peft_config", None)
    lora_rank = None
    if peft:
        lora_rank = next(iter(peft.values())).r
    checkpointing = bool(
        getattr(args, "activation_checkpointing", False)
        or getattr(args, "gradient_checkpointing", False)
    )
    mixed = "bf16" if getattr(args, "bf16", False) else "fp16" if args.fp16 else None
    optimizer = "sgd" if "sgd" in str(args.optim).lower() else "adamw"
    settings = {
        "batch_size": args.per_device_train_batch_size,
        "seq_len": getattr(args, "max_length", None) or 1024,
        "lora_rank": lora_rank,
        "gradient_checkpointing": checkpointing,
        "mixed_precision": mixed,
        "optimizer": optimizer,
        "attn_implementation": "eager" if base.config._attn_implementation == "eager" else "sdpa",
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
    }
    return base, settings


def error_device(error: BaseException) -> str:
    """ "cuda" for CUDA's out-of-memory error, else "cpu"."""
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return "cuda"
    except (ImportError, AttributeError):
        pass
    return "cuda" if "cuda" in str(error).lower() else "cpu"


def explain(error: BaseException, model_or_config: Any, **settings: Any) -> TrainingOutOfMemory:
    """The advice-carrying error for `error` (not raised; see :func:`explain_oom`)."""
    device = error_device(error)
    estimate = None
    advice: list[Advice] = []
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    lines = [f"out of memory: {first_line}"]
    try:
        estimate = estimate_training_memory(model_or_config, **settings)
        advice = advise(model_or_config, device=device, **settings)
    except (ValueError, TypeError, AttributeError) as why:
        lines.append(f"(no estimate for these settings: {why})")
    if estimate is not None:
        process = estimate.process_memory(device)
        lines.append(f"these settings: {estimate.describe()}.")
        lines.append(
            f"{process.short()}; live tensors {estimate.total / 1e9:.2f} GB. "
            f"Savings below are of the {process.label.removeprefix('predicted ')}."
        )
    if advice:
        lines.append("What would help, largest saving first:")
        lines += [f"  {i}. {a}" for i, a in enumerate(advice, 1)]
    elif estimate is not None:
        lines.append("No setting the estimator knows lowers the peak: try a smaller model.")
    return TrainingOutOfMemory("\n".join(lines), advice, estimate)


@contextlib.contextmanager
def explain_oom(trainer_or_model: Any, **settings: Any):
    """Context manager: re-raise an out-of-memory error with advice ranked by the estimator.

    Give a trainer (its settings are read from it; keywords override them), or a model
    or config with the ``estimate_training_memory`` keywords (batch_size, seq_len, ...).
    Errors that are not about memory pass through unchanged.
    """
    try:
        yield
    except BaseException as error:
        if not is_out_of_memory(error) or isinstance(error, TrainingOutOfMemory):
            raise
        if hasattr(trainer_or_model, "args") and hasattr(trainer_or_model, "model"):
            model, read = settings_from_trainer(trainer_or_model)
            settings = {**read, **settings}
        else:
            model = trainer_or_model
        raise explain(error, model, **settings) from error
