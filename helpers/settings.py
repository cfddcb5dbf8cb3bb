"""What a library config changes: its fields that differ from the library's own defaults.

A config object (trl's ``SFTConfig``, peft's ``LoraConfig``, transformers'
``BitsAndBytesConfig``) has dozens of fields, and printing it hides the few that
matter among the many left alone. ``non_defaults`` compares a config with a
default-constructed config of the same class and keeps only the fields that differ,
each with a one-line reason from ``REASONS``. A differing field without a reason is
flagged (``MISSING_REASON``), and a test fails on it, so the reasons cannot go stale
when a builder or a library default changes.

A few fields follow the machine (``MACHINE_FIELDS``: bf16, use_cpu, the 4-bit compute
dtype). They are kept out of the main table so that it reads the same on every
machine, and listed on their own with ``machine=True``. The default config is built
with this machine's values for them, because trl's default (``bf16=True``) cannot
even be constructed on a CPU without ``use_cpu=True``.
"""

from __future__ import annotations

import dataclasses
import enum
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

MISSING_REASON = "NO REASON RECORDED: add one to helpers.settings.REASONS"

MACHINE_FIELDS = frozenset({"bf16", "use_cpu", "bnb_4bit_compute_dtype"})
"""Fields whose value depends on the hardware (they get their own table)."""

_TRAINING = {
    "output_dir": "where the trainer writes its files (the adapter is saved below it)",
    "per_device_train_batch_size": "examples per step; small batches keep a CPU step short",
    "per_device_eval_batch_size": "examples per evaluation batch",
    "gradient_accumulation_steps": "batches summed into one update (a larger batch, same memory)",
    "num_train_epochs": "passes over the data; ignored when max_steps is set",
    "max_steps": "a fixed number of updates, the chapter's training budget",
    "learning_rate": "a step moves only the small factors B and A, and the weights by their "
    "product: LoRA recipes use rates 10-100x trl's 2e-5, which suits full fine-tuning",
    "lr_scheduler_type": "warm up, then decay smoothly towards zero",
    "warmup_steps": "a float below 1 is a fraction of the steps: 10% warm-up, no early jolt",
    "max_length": "the longest Yoda conversation fits (section 2 prints it); batches are "
    "padded to their longest example, so the limit matters only for longer data",
    "activation_checkpointing": "recomputing activations saves memory but costs compute; "
    "a 135M model at 128 tokens fits without it",
    "gradient_checkpointing": "the deprecated old name of activation_checkpointing; "
    "transformers keeps it equal to the new one",
    "logging_steps": "log the loss every 5 steps: enough points for a short run's curve",
    "save_strategy": "no checkpoints during a short run; the adapter is saved once at the end",
    "seed": "the course's seed: the same initial adapters and draws on every run (results "
    "can still differ slightly between machines)",
    "data_seed": "the batch order's seed, written out (None would reuse seed)",
    "eval_strategy": "evaluate during training, on held-out examples",
    "eval_steps": "how often the held-out loss is measured",
    "eval_on_start": "measure the held-out loss once before the first step: where the curve starts",
    "do_eval": "set by transformers itself whenever eval_strategy is not 'no'",
    "report_to": "no tracking service is reachable offline",
    "fp16": "no fp16: the course computes in bf16 where the hardware has it, else in fp32",
    "dataloader_num_workers": "batches are made in the main process: workers cost more "
    "than they save on 2 cores",
    "bf16": "bf16 autocast only where the hardware has bf16 instructions; "
    "emulated bf16 is many times slower (trl turns it on everywhere)",
    "use_cpu": "train on the CPU when there is no GPU (without it, transformers refuses "
    "bf16=True, trl's default, on a machine without a bf16 GPU)",
}

_LORA = {
    "r": "the rank of each low-rank update: 16 is ample for this task (chapter 03 counts "
    "what a rank costs)",
    "lora_alpha": "the update is scaled by alpha / r; alpha = 2r is the usual choice",
    "target_modules": "adapt every linear layer of the blocks (peft leaves the output "
    "layer, lm_head, alone)",
    "lora_dropout": "dropout on the adapters' input",
    "task_type": "a causal language model: peft wraps it as PeftModelForCausalLM",
}

_QUANTIZATION = {
    "load_in_4bit": "store the linear layers' weights in 4 bits",
    "load_in_8bit": "store the linear layers' weights in 8 bits",
    "bnb_4bit_quant_type": "NF4 levels fit normally distributed weights better than FP4",
    "bnb_4bit_use_double_quant": "quantize the per-block scales too (saves about 0.4 bit a weight)",
    "bnb_4bit_compute_dtype": "weights are de-quantized to this dtype for each matmul: "
    "bf16 where the hardware has it, else fp32",
}

REASONS: dict[str, dict[str, str]] = {
    "SFTConfig": _TRAINING,
    "TrainingArguments": _TRAINING,
    "LoraConfig": _LORA,
    "BitsAndBytesConfig": _QUANTIZATION,
}
"""Why the course sets each field, by config class name."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One field of a config: its value, the library's default, and why it is set."""

    name: str
    value: Any
    default: Any
    reason: str

    @property
    def has_reason(self) -> bool:
        return self.reason != MISSING_REASON


def _fields(config) -> dict[str, Any]:
    """A config's public fields (dataclasses: their fields; others: ``to_dict()``)."""
    # transformers' quantization configs are dataclasses in name only: their fields are
    # plain attributes, which to_dict() lists.
    if dataclasses.is_dataclass(config) and not hasattr(config, "quant_method"):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if hasattr(config, "to_dict"):
        return {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
    raise TypeError(
        f"{type(config).__name__} is not a config this helper can read: pass a dataclass "
        "config (SFTConfig, LoraConfig, ...) or one with to_dict() (BitsAndBytesConfig)."
    )


def default_config(config):
    """A config of the same class built with no arguments but this machine's fields.

    The library's own warnings while building it (trl's default turns on a deprecated
    alias) are silenced: they are about the default, not about the learner's config.
    """
    cls = type(config)
    values = _fields(config)
    machine = {k: v for k, v in values.items() if k in MACHINE_FIELDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cls(**machine)
        except TypeError:
            return cls()


def _library_default(config, name: str) -> Any:
    """The default of one field as the library itself would set it on this machine.

    Built with no arguments at all where that works; where it does not (trl's
    ``SFTConfig()`` refuses bf16 on a CPU without ``use_cpu=True``), the declared default.
    """
    cls = type(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _fields(cls()).get(name)
        except (TypeError, ValueError):
            pass
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if field.name == name and field.default is not dataclasses.MISSING:
                return field.default
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, enum.Enum):
        a = a.value
    if isinstance(b, enum.Enum):
        b = b.value
    try:
        return bool(a == b)
    except Exception:  # objects whose == is not a plain bool
        return a is b


def non_defaults(
    config,
    *,
    reasons: Mapping[str, str] | None = None,
    machine: bool = False,
    also: Iterable[str] = (),
) -> list[Setting]:
    """The fields of `config` that differ from a default-constructed config of its class.

    `reasons` adds or overrides reasons for this call (a notebook's own choices).
    `machine=False`: every differing field except ``MACHINE_FIELDS``, plus the fields
    named in `also` (a builder pins them, though they equal today's default);
    `machine=True`: only the machine fields the class has, whether or not they differ.
    """
    table = {**REASONS.get(type(config).__name__, {}), **(reasons or {})}
    also = tuple(also)
    values = _fields(config)
    unknown = sorted(set(also) - set(values))
    if unknown:
        raise ValueError(f"{type(config).__name__} has no field(s) {unknown}; check the spelling.")
    defaults = _fields(default_config(config))
    rows = []
    for name, value in values.items():
        if (name in MACHINE_FIELDS) != machine:
            continue
        default = _library_default(config, name) if machine else defaults.get(name)
        if not machine and name not in also and _same(value, default):
            continue
        rows.append(Setting(name, value, default, table.get(name, MISSING_REASON)))
    return rows


def missing_reasons(config, *, reasons: Mapping[str, str] | None = None) -> list[str]:
    """Names of the fields that differ from the defaults but have no recorded reason."""
    rows = non_defaults(config, reasons=reasons) + non_defaults(
        config, reasons=reasons, machine=True
    )
    return [row.name for row in rows if not row.has_reason]


def _show(value: Any) -> str:
    """A value as one would write it in Python (enums by value, sets sorted)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}"
    return repr(value)


def _library(config) -> str:
    """The owning library, possessive: "trl's", "peft's", "transformers'"."""
    name = type(config).__module__.split(".")[0]
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def settings_table(
    config,
    *,
    reasons: Mapping[str, str] | None = None,
    machine: bool = False,
    also: Iterable[str] = (),
) -> str:
    """The rows of ``non_defaults`` as text: ``name = value (default ...)`` and its reason."""
    also = tuple(also)
    rows = non_defaults(config, reasons=reasons, machine=machine, also=also)
    name, library = type(config).__name__, _library(config)
    if machine:
        head = f"{name}: fields that follow this machine's hardware"
    else:
        differ = sum(row.name not in also or not _same(row.value, row.default) for row in rows)
        head = f"{name}: {differ} fields differ from {library} defaults"
        if len(rows) > differ:
            head += f" ({len(rows) - differ} more pinned at the default)"
    lines = [head]
    for row in rows:
        setting = f"{row.name} = {_show(row.value)}"
        if _same(row.value, row.default):
            lines.append(f"  {setting:<44} (the same as {library} default)")
        else:
            lines.append(f"  {setting:<44} ({library} default: {_show(row.default)})")
        lines.append(f"      {row.reason}")
    return "\n".join(lines)


def show(
    config,
    *,
    reasons: Mapping[str, str] | None = None,
    machine: bool = False,
    also: Iterable[str] = (),
) -> None:
    """Print ``settings_table(config, ...)``."""
    print(settings_table(config, reasons=reasons, machine=machine, also=also))
