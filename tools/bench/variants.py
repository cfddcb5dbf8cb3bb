"""The tuning variants: the course recipe with one default flipped, and how each is judged.

A variant knows everything that is particular to it: what it changes (trainer settings,
the model it starts from, environment variables), what it is compared with (its
baseline), what it is expected to cost in time (so the budget can leave it out), and
how its measured ratio turns into a verdict on the default. The run only races them
and asks each for its line of the tuning table.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import training

# Two runs of the same recipe in one benchmark on this shared 2-core machine differed by
# up to 15% (the course recipe and its "reference" rerun; eager vs sdpa read 1.03× in one
# run and 1.15× in the next): below this ratio a difference is noise, and a default stays.
CLEAR_GAIN = 1.2

# The tuning variant the benchmark proposes next, raced beside the default and the classic
# recipe. (transformers' own group_by_length is not a candidate: it sorts each bucket
# longest first, so the first steps hold the longest examples, which flatters a benchmark
# of a few steps; the course's bucketed order keeps the batches in random order.)
PROPOSED = "packing"

REFERENCE = "reference"  # the course recipe run again beside the variants


def verdict(ratio: float | None, switch: str, keep: str) -> str:
    """Switch only for a clear gain (``CLEAR_GAIN``); otherwise say why the default stays."""
    if ratio is None:
        return "not measured"
    if ratio >= CLEAR_GAIN:
        return switch
    if ratio > 1 / CLEAR_GAIN:
        return f"keep {keep}: no difference beyond noise"
    return f"keep {keep}"


def course_batch_size() -> int:
    return inspect.signature(training.sft_config).parameters["per_device_train_batch_size"].default


@dataclass
class Variant:
    """One default flipped, to see what it costs or saves (a tuning experiment)."""

    name: str
    setting: str
    default: str
    alternative: str
    overrides: dict[str, Any] = field(default_factory=dict)
    attention: str | None = None  # another attention implementation
    quantization: str | None = None  # load the base model quantized
    fp32: bool = False  # start from fp32 weights (where the default loads bf16, on a GPU)
    cost: float = 1.0  # expected step time relative to the course recipe's
    warmup: int = 0  # untimed steps it needs beyond the plan's (the whole race waits for it)
    baseline: str = REFERENCE  # the recipe its speed and memory are compared with

    @property
    def description(self) -> str:
        return f"{self.setting}: {self.alternative}"

    def expected_cost(self, kernels: dict[str, Any]) -> float:
        """Step time relative to the course recipe's, given the run's kernel figures."""
        return self.cost

    def environment(self, workdir: Path) -> dict[str, str]:
        """Environment variables the variant's race needs (set for the race only)."""
        return {}

    def model(self, base, base_fp32, model_name: str):
        """A fresh model to train: a copy of `base`, or what the variant starts from."""
        from . import recipes

        if self.quantization:
            from helpers.models import load_model

            model, _ = load_model(model_name, quantization=self.quantization)
        elif self.fp32 and base_fp32 is not None:
            model = recipes.fresh(base_fp32)
        else:
            model = recipes.fresh(base)
        if self.attention:
            model.set_attn_implementation(self.attention)
        return model

    def changed(self) -> dict[str, Any]:
        """What the variant changes, as recorded in the results."""
        changed = dict(self.overrides)
        if self.attention:
            changed["attention"] = self.attention
        if self.quantization:
            changed["quantization"] = self.quantization
        return changed

    def judge(
        self, results: dict, measured: str, ratio: float | None, memory: float | None
    ) -> tuple[str, str]:
        """(what was measured, the verdict on the default), from the ratios to the baseline."""
        return measured, verdict(ratio, f"switch to {self.alternative}", self.default)


@dataclass
class Checkpointing(Variant):
    def judge(self, results, measured, ratio, memory):
        measured, said = super().judge(results, measured, ratio, memory)
        if ratio is not None and ratio < 1 and memory:
            said = f"keep off: slower, for {1 - memory:.0%} less peak memory"
        return measured, said


@dataclass
class QLoRA(Variant):
    """4-bit is about memory: it is kept unless it costs clear time."""

    def judge(self, results, measured, ratio, memory):
        measured, said = super().judge(results, measured, ratio, memory)
        if ratio is not None:
            said = (
                "keep 4-bit in chapter 00: it is about memory, and costs no time beyond noise"
                if ratio > 1 / CLEAR_GAIN
                else f"4-bit costs time here ({1 / ratio:.2f}× slower); it saves memory"
            )
        return measured, said


@dataclass
class Autocast(Variant):
    """bf16 autocast on where the default is fp32, off where the default is bf16."""

    to_bf16: bool = True

    def expected_cost(self, kernels):
        ratio = kernels["bf16_vs_fp32"]["ratio"]  # its matmuls run at the other dtype's speed
        return 1 / ratio if self.to_bf16 else ratio

    def judge(self, results, measured, ratio, memory):
        measured, said = super().judge(results, measured, ratio, memory)
        b = results["matmul"]["bf16_vs_fp32"]
        measured = (
            f"bf16 matmul {b['ratio']:.2f}× fp32 ({b['bf16_flops_per_s'] / 1e9:.1f} vs "
            f"{b['fp32_flops_per_s'] / 1e9:.1f} GFLOP/s, {b['shape']}); training step: " + measured
        )
        if ratio is None and not b["bf16_native"] and b["ratio"] < 1:
            said = "keep fp32: bf16 is emulated here, its matmuls are slower"
        return measured, said


@dataclass
class Compile(Variant):
    """torch.compile, judged by when the time spent compiling is repaid."""

    def environment(self, workdir):
        # a cold compile cache, as on a learner's first run (later runs reuse it)
        return {"TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor-cache")}

    def judge(self, results, measured, ratio, memory):
        measured, said = super().judge(results, measured, ratio, memory)
        if ratio is None:
            return measured, said
        return compile_payback(results, baseline_name(self, results), measured, said)


def baseline_name(variant: Variant, results: dict) -> str:
    """The recipe `variant` is compared with: its baseline, or the course run if there was
    no reference run."""
    if variant.baseline == REFERENCE and REFERENCE not in results["recipes"]:
        return "course"
    return variant.baseline


def compile_payback(results: dict, base: str, measured: str, said: str) -> tuple[str, str]:
    """Add what compiling costs up front, and after how many steps a faster step repays it.

    The warm-up steps of the compiled recipe hold the compilation; the time they take
    beyond as many compiled steps is the cost. Chapter 00, the longest training of the
    course, trains the plan's ``ttq_max_steps`` (90).
    """
    chapter_steps = results["plan"]["ttq_max_steps"]
    compiled = results["recipes"]["compile"]
    warmup = compiled["steps"][: compiled["warmup"]]
    step = compiled["summary"]["step_seconds"]
    saved = results["recipes"][base]["summary"]["step_seconds"] - step
    cost = max(sum(s["seconds"] for s in warmup) - len(warmup) * step, 0.0)
    measured += f"; compiling: {cost:.0f} s in the first {len(warmup)} steps"
    if saved <= 0:
        return measured + ", never repaid", "keep off: compiling costs time and saves none"
    payback = cost / saved
    measured += f", repaid after {payback:.0f} steps of {saved:.2f} s saved"
    if payback > chapter_steps:
        said = f"keep off: repaid only after {payback:.0f} steps; chapter 00 trains {chapter_steps}"
    return measured, said


def variants(bf16_default: bool, with_compile: bool) -> list[Variant]:
    """The tuning experiments, most informative first (the budget may cut the list)."""
    batch = f"{course_batch_size()}"
    found = [
        Variant(
            "trl_head",
            "output layer (LM head) in the loss",
            "on the scored (answer) positions only",
            "trl's fused head, on every position",
            {"lm_head": "trl"},
            cost=1.35,
        ),
        Variant(
            "random_order",
            "batch order",
            "batches of similar lengths, in random order",
            "random (transformers' shuffle)",
            {"batch_order": "random"},
            cost=1.15,
        ),
        Variant(
            "packing",
            "packing",
            "off",
            "bfd packing, 3 rows of 128 tokens (about as many as 8 padded examples)",
            {"packing": True, "per_device_train_batch_size": 3},
        ),
        Variant(
            "padding_free",
            "padding",
            "pad to the longest example of the batch",
            "padding-free (one row, no padding)",
            {"padding_free": True},
        ),
        Checkpointing(
            "checkpointing",
            "gradient checkpointing",
            "off",
            "on",
            {"gradient_checkpointing": True},
            cost=1.4,
        ),
        Variant(
            "eager", "attention", "sdpa", "eager (matmul + softmax)", attention="eager", cost=1.2
        ),
        Variant("batch_4", "batch size", batch, "4", {"per_device_train_batch_size": 4}, cost=0.55),
        Variant(
            "batch_16", "batch size", batch, "16", {"per_device_train_batch_size": 16}, cost=1.9
        ),
        QLoRA(
            "qlora_4",
            "base model (chapter 00)",
            "fp32, batch 4",
            "4-bit, batch 4",
            {"per_device_train_batch_size": 4},
            quantization="4bit",
            cost=0.65,
            baseline="batch_4",
        ),
        Autocast(
            "autocast",
            "mixed precision",
            "bf16 autocast" if bf16_default else "fp32 (no native bf16 here)",
            "fp32" if bf16_default else "bf16 autocast",
            {"bf16": not bf16_default},
            fp32=bf16_default,
            to_bf16=not bf16_default,
        ),
    ]
    if with_compile:  # minutes of compiling on a small CPU
        # Two steps compile: the first batch's shapes, then (at the second length) a
        # graph for any length.
        found.append(
            Compile(
                "compile",
                "torch.compile",
                "off",
                "on",
                {"torch_compile": True},
                cost=60.0,
                warmup=1,
            )
        )
    return found


def proposal() -> Variant:
    """The variant the benchmark proposes (``PROPOSED``)."""
    return next(v for v in variants(False, False) if v.name == PROPOSED)
