"""Where one training step's time goes: ``torch.profiler`` over one step, grouped by work.

``python -m tools.bench profile`` trains the course's recipe (the benchmark's "course"
entry: SmolLM2 in the course's default dtype, LoRA r=16 on every linear layer, batch 8,
bf16 autocast where it is native) and chapter 00's (the 4-bit base, batch 4) for a few
steps each, profiles one step after the warm-up, and writes ``profile.json`` next to
``results.json``; ``results.md`` then shows the table with its own date and machine.

Every operator the profiler saw contributes its *self* time (its children's left out, so
nothing counts twice) to one group, chosen by the nearest operator above it (itself
included) that names a group:

- a matrix product (``aten::linear``, ``matmul``, ``mm``, ``addmm``, ``bmm``) with a
  dimension as wide as the
  vocabulary is the **loss head**, as are the log-softmax and cross-entropy operators;
- one with a dimension equal to the LoRA rank is a **LoRA matmul** (forward or backward);
- any other is a **base-model matmul**, split by whether it ran in the forward pass or
  in the backward pass (there, with frozen weights, it computes input gradients only);
- scaled-dot-product attention, forward and backward, is **attention**;
- ``aten::to``/``_to_copy``/``copy_`` are **dtype casts** (autocast's bf16 copy of a
  weight, the fp32 view of a 4-bit weight);
- bitsandbytes' operators are **4-bit de-quantization**;
- everything under ``Optimizer.step`` is the **optimizer**;
- other ``aten::`` operators are **element-wise ops and norms**; the rest (the trainer's
  Python, autograd's bookkeeping) is **framework**.

The step's wall time is measured around the profiled step; what no operator accounts for
is **outside any operator**. Collating a batch happens before the step begins, so it is
timed on its own (**data and collation**, per batch) and shown beside the step. The
profiler slows every operator a little, so read shares, not seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

GROUPS = (
    "base-model matmuls, forward",
    "base-model matmuls, input gradients (backward)",
    "LoRA matmuls (forward and backward)",
    "dtype casts",
    "4-bit de-quantization",
    "element-wise ops and norms",
    "attention",
    "loss head (output layer, cross-entropy)",
    "optimizer",
    "framework (Python, autograd bookkeeping)",
    "outside any operator",
)
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"}
CASTS = {"aten::to", "aten::_to_copy", "aten::copy_"}
LOSS_OPS = ("log_softmax", "cross_entropy", "nll_loss", "logsumexp")
BACKWARD_MARK = "autograd::engine::evaluate_function"
OPTIMIZER_MARK = "Optimizer.step"


@dataclass
class Op:
    """One profiled operator, as the grouping sees it (also built by hand in the tests)."""

    name: str
    self_seconds: float
    shapes: list = field(default_factory=list)
    parent: Op | None = None

    def ancestors(self):
        node = self
        while node is not None:
            yield node
            node = node.parent


def _dims(shapes) -> set[int]:
    return {d for shape in shapes or [] if isinstance(shape, (list, tuple)) for d in shape}


def _own_group(op: Op, vocab: int, rank: int) -> str | None:
    """The group `op` names by itself, or None when it names none."""
    name = op.name
    if name.startswith(OPTIMIZER_MARK):
        return "optimizer"
    if name in MATMULS:
        dims = _dims(op.shapes)
        if vocab in dims:
            return "loss head (output layer, cross-entropy)"
        if rank in dims:
            return "LoRA matmuls (forward and backward)"
        return "base-model matmuls"
    if any(part in name for part in LOSS_OPS):
        return "loss head (output layer, cross-entropy)"
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if name in CASTS:
        return "dtype casts"
    if name.startswith("bitsandbytes::"):
        return "4-bit de-quantization"
    return None


def group_of(op: Op, vocab: int, rank: int) -> str:
    """The group that `op`'s self time belongs to (see the module docstring)."""
    backward = any(node.name.startswith(BACKWARD_MARK) for node in op.ancestors())
    for node in op.ancestors():
        found = _own_group(node, vocab, rank)
        if found == "base-model matmuls":
            return GROUPS[1] if backward else GROUPS[0]
        if found is not None:
            return found
    if op.name.startswith("aten::"):
        return "element-wise ops and norms"
    return "framework (Python, autograd bookkeeping)"


def grouped_seconds(ops: list[Op], wall_seconds: float, vocab: int, rank: int) -> dict:
    """Seconds per group for one step; the remainder of `wall_seconds` is outside any op."""
    seconds = dict.fromkeys(GROUPS, 0.0)
    for op in ops:
        seconds[group_of(op, vocab, rank)] += op.self_seconds
    seconds["outside any operator"] = max(0.0, wall_seconds - sum(seconds.values()))
    return seconds


def ops_from_profile(prof) -> list[Op]:
    """The profiler's CPU events as :class:`Op` objects, their parents linked."""
    events = list(prof.events())
    made: dict[int, Op] = {}
    for event in events:
        made[id(event)] = Op(event.name, event.self_cpu_time_total / 1e6, event.input_shapes)
    for event in events:
        parent = getattr(event, "cpu_parent", None)
        if parent is not None and id(parent) in made:
            made[id(event)].parent = made[id(parent)]
    return list(made.values())


class ProfileStep(TrainerCallback):
    """Profiles optimizer step `at` (1-based) of a ``Trainer`` with ``torch.profiler``."""

    def __init__(self, at: int):
        self.at = at
        self.prof = None
        self.wall_seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.at:
            from torch.profiler import ProfilerActivity, profile

            self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self.prof.__enter__()
            self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at and self.prof is not None:
            self.wall_seconds = time.perf_counter() - self._start
            self.prof.__exit__(None, None, None)


def collation_seconds(trainer, repeats: int = 5) -> float:
    """Median seconds to collate one training batch (the step's data side)."""
    import statistics

    loader = trainer.get_train_dataloader()
    batch_size = trainer.args.per_device_train_batch_size
    dataset = loader.dataset
    features = [dataset[i] for i in range(batch_size)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.data_collator([dict(f) for f in features])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_trainer(trainer, at: int, rank: int) -> dict[str, Any]:
    """Train `trainer` up to step `at`, profiling that step; its groups and shares."""
    probe = ProfileStep(at)
    trainer.add_callback(probe)
    trainer.train()
    if probe.prof is None:
        raise RuntimeError(f"step {at} was never reached: the trainer stopped earlier")
    vocab = trainer.model.get_output_embeddings().weight.shape[0]
    seconds = grouped_seconds(ops_from_profile(probe.prof), probe.wall_seconds, vocab, rank)
    return {
        "step": at,
        "wall_seconds": probe.wall_seconds,
        "collation_seconds": collation_seconds(trainer),
        "seconds": seconds,
        "shares": {g: s / probe.wall_seconds for g, s in seconds.items()},
        "bf16": bool(trainer.args.bf16),
        "batch_size": trainer.args.per_device_train_batch_size,
    }


def run(model_name: str, out_dir: str | Path, at: int = 3) -> dict[str, Any]:
    """Profile the course's recipe and chapter 00's; write ``profile.json`` in `out_dir`."""
    import tempfile

    from helpers import hardware
    from helpers.data import load_dataset
    from helpers.models import load_model
    from helpers.recipes import YODA_RECIPE, yoda_trainer

    from . import recipes
    from .run import load_average, machine_meta

    started = time.perf_counter()
    meta = machine_meta(model_name, False, hardware.device_name())
    train = load_dataset("yoda")["train"]
    result: dict[str, Any] = {"meta": meta, "recipes": {}}
    with tempfile.TemporaryDirectory() as work:
        model, tokenizer = load_model(model_name)
        clock = recipes.StepClock("course", echo=False)
        course = recipes.course_trainer(model, tokenizer, train, f"{work}/course", at, clock)
        result["recipes"]["course"] = {
            "description": "course recipe: LoRA r=16, batch 8, the course's default dtype",
            **profile_trainer(course, at, rank=16),
        }
        del course, model
        model, tokenizer = load_model(model_name, quantization=YODA_RECIPE["quantization"])
        chapter00 = yoda_trainer(
            model, tokenizer, train, f"{work}/chapter00", max_steps=at, disable_tqdm=True
        )
        recipes.quiet(chapter00)
        result["recipes"]["chapter00"] = {
            "description": "chapter 00: 4-bit base, LoRA r=16, batch 4",
            **profile_trainer(chapter00, at, rank=YODA_RECIPE["lora_r"]),
        }
    meta["load_end"] = load_average()
    meta["seconds"] = time.perf_counter() - started
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
