"""The benchmark run: every section in order, within a time budget, into results.json/.md.

Sections, in order (``python -m tools.bench`` prints each one's time):

1. setup: the fp32 model, the Yoda data, the classic recipe's padded text;
2. kernels: the fp32 matmul peak (all threads, and one), bf16 against fp32 on a
   model-sized product, and the loss over the vocabulary computed two ways;
3. course vs classic: both recipes, and the course recipe with the change the benchmark
   proposes (``variants.PROPOSED``), steps interleaved, with a matmul probe taking its turn
   between steps (goals 1, 2 and 3);
4. time to quality: chapter 00's recipe until 80% exact match (goal 4), and the
   4-bit footprint (goal 3);
5. tuning variants: the course recipe again beside copies of it with one default
   flipped, as many as the time budget allows;
6. confirm by generation: the chapter's own score of the model from section 4, if
   there is time left.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers import hardware, training
from helpers.models import DEFAULT_MODEL
from helpers.recipes import YODA_RECIPE, yoda_trainer
from helpers.repo import repo_root

from . import matmul, recipes, report
from .quality import QualityWatcher
from .variants import (
    Compile,
    Variant,
    baseline_name,
    course_batch_size,
    proposal,
    variants,
    verdict,
)

DEFAULT_OUT = (repo_root() or Path.cwd()) / "bench"
GOAL_SPEEDUP = 5.0
GOAL_UTILIZATION = 0.5
GOAL_FOOTPRINT = 0.35
# A race whose matmul probe ran below this share of the run's best was run on a busy
# machine: other processes' memory traffic slows memory-bound steps (full fine-tuning's
# optimizer, big logits) more than compute-bound ones, which skews ratios.
BUSY = 0.8

# Chapter 00's recipe (notebooks/00_tldr.ipynb), the object the cached adapter is trained from.
CHAPTER00 = YODA_RECIPE


@dataclass(frozen=True)
class Plan:
    """How many steps and checks each section runs."""

    warmup: int
    course_steps: int
    classic_steps: int
    variant_steps: int
    matmul_shapes: tuple[tuple[int, int, int], ...]
    probe_shape: tuple[int, int, int]  # the matmul sampled between steps
    small_shape: tuple[int, int, int]  # the bf16-vs-fp32 comparison (bf16 may be emulated)
    ttq_max_steps: int
    ttq_every: int
    ttq_trigger: float | None  # training token accuracy that starts the checks (None: always)
    ttq_rows: int  # test sentences checked (the first ones of the test split)
    budget: float | None  # seconds for the whole run (None: no limit)
    variants: tuple[str, ...] | None = None  # tuning variants to try (None: all)


FULL = Plan(
    warmup=1,
    course_steps=5,
    classic_steps=3,
    variant_steps=2,
    matmul_shapes=matmul.FULL_SHAPES,
    probe_shape=(2048, 2048, 2048),
    small_shape=(512, 576, 1536),
    ttq_max_steps=CHAPTER00["max_steps"],
    ttq_every=10,
    ttq_trigger=0.97,
    ttq_rows=50,
    budget=780.0,  # 13 min, so that `make bench` ends within 15 even when a race runs long
)
QUICK = Plan(
    warmup=1,
    course_steps=2,
    classic_steps=1,
    variant_steps=1,
    matmul_shapes=matmul.QUICK_SHAPES,
    probe_shape=(512, 512, 512),
    small_shape=(128, 128, 128),
    ttq_max_steps=4,
    ttq_every=2,
    ttq_trigger=None,
    ttq_rows=8,
    budget=None,
    variants=("padding_free", "trl_head"),
)


class Runner:
    """Keeps time: sections and the budget."""

    def __init__(self, budget: float | None):
        self.budget = budget
        self.start = time.perf_counter()
        self.sections: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, seconds: float) -> bool:
        return self.budget is None or self.elapsed() + seconds <= self.budget

    @contextlib.contextmanager
    def section(self, name: str):
        print(f"[{self.elapsed():6.0f} s] {name}", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sections[name] = time.perf_counter() - start
            print(f"[{self.elapsed():6.0f} s] {name}: {self.sections[name]:.0f} s", flush=True)


@contextlib.contextmanager
def scoped_environ(changes: Mapping[str, str]):
    """Set environment variables for the block only: afterwards each has its old value
    again, or is unset if it was (also after an exception)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def four_bit_here(device: str) -> bool:
    """Whether bitsandbytes' 4-bit layers run on this device itself (the course's placement
    rule, ``hardware.placement``, would move them to the CPU elsewhere)."""
    return (
        device in hardware.bitsandbytes_devices() and hardware.placement("4bit", device) == device
    )


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(model_name: str, quick: bool, device: str) -> dict[str, Any]:
    import peft
    import transformers
    import trl

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "device": device,
        "bf16_native": hardware.bf16_native(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "model": model_name,
        "quick": quick,
        "load_start": load_average(),
    }


# --- sections: measuring -------------------------------------------------------------------


def measure_kernels(plan: Plan, device: str, head_weight, head_tokens: int) -> dict[str, Any]:
    """fp32 peak (all threads and one), bf16 against fp32, and the loss head two ways."""
    out: dict[str, Any] = {"fp32": matmul.peak(plan.matmul_shapes, device=device)}
    bf16_native = hardware.bf16_native(device)
    if bf16_native:  # bf16 is fast here: measure its peak like fp32's
        out["bf16"] = matmul.peak(plan.matmul_shapes, torch.bfloat16, device=device)
    m, k, n = plan.small_shape
    same_fp32 = matmul.matmul_flops_per_second(m, k, n, repeats=3, device=device)
    same_bf16 = matmul.matmul_flops_per_second(m, k, n, torch.bfloat16, repeats=2, device=device)
    out["bf16_vs_fp32"] = {
        "shape": f"{m}x{k}x{n}",
        "fp32_flops_per_s": same_fp32,
        "bf16_flops_per_s": same_bf16,
        "ratio": same_bf16 / same_fp32,
        "bf16_native": bf16_native,
    }
    threads = torch.get_num_threads()
    if device == "cpu" and threads > 1:
        shapes = plan.matmul_shapes[:2]
        one = matmul.with_threads(1, lambda: matmul.peak(shapes, repeats=3, device=device))
        default = max(out["fp32"]["by_shape"]["x".join(map(str, s))] for s in shapes)
        out["threads"] = {
            "default": threads,
            "shapes": ["x".join(map(str, s)) for s in shapes],
            "default_flops_per_s": default,
            "one_thread_flops_per_s": one["flops_per_s"],
        }
    out["loss_head"] = recipes.loss_head_seconds(head_weight, head_tokens)
    return out


def make_probe(plan: Plan, device: str):
    """A quick matmul peak in fp32 (and bf16 where native), sampled between training steps."""
    m, k, n = plan.probe_shape
    bf16 = hardware.bf16_native(device)

    def probe() -> dict[str, float]:
        sample = {"fp32": matmul.matmul_flops_per_second(m, k, n, repeats=2, device=device)}
        if bf16:
            sample["bf16"] = matmul.matmul_flops_per_second(
                m, k, n, torch.bfloat16, repeats=2, device=device
            )
        return sample

    return probe


@dataclass
class Entry:
    """A recipe built and ready to train: its trainer, its clock, and its result to fill."""

    result: recipes.RecipeResult
    trainer: Any
    clock: recipes.StepClock
    timed: int
    memory_step: int | None


@dataclass
class Bench:
    """What the sections of one run share: plan, clock, models, data and the results."""

    model_name: str
    plan: Plan
    device: str
    runner: Runner
    workdir: Path
    probe: Callable[[], dict[str, float]]
    results: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    base: Any = None  # the course's model (its default dtype)
    base_fp32: Any = None  # the classic recipe's (the same model on a CPU)
    tokenizer: Any = None
    data: Any = None
    classic_data: Any = None
    bf16_default: bool = False
    rows: Any = None  # the test sentences of the time-to-quality checks
    chapter00: tuple[Any, Any] | None = None  # (trainer, tokenizer) trained to quality
    variant_list: list[Variant] = field(default_factory=list)


def build_course(
    bench: Bench,
    name: str,
    description: str,
    *,
    warmup: int,
    timed: int,
    variant: Variant | None = None,
) -> Entry:
    """The course recipe (with `variant`'s change, if any), ready to race."""
    if variant is None:
        model = recipes.fresh(bench.base)
    else:
        model = variant.model(bench.base, bench.base_fp32, bench.model_name)
    overrides = dict(variant.overrides) if variant else {}
    steps = warmup + timed + 1
    clock = recipes.StepClock(name, memory_step=steps)
    trainer = recipes.course_trainer(
        model,
        bench.tokenizer,
        bench.data["train"],
        str(bench.workdir / name),
        steps,
        clock,
        **overrides,
    )
    settings = {
        "batch_size": trainer.args.per_device_train_batch_size,
        "max_length": trainer.args.max_length,
        "lora_r": 16,
        "bf16": bool(trainer.args.bf16),
        "attention": model.config._attn_implementation,
        "padding_free": bool(trainer.args.padding_free),
        "packing": bool(trainer.args.packing),
        "gradient_checkpointing": bool(trainer.args.activation_checkpointing),
        "torch_compile": bool(trainer.args.torch_compile),
        "quantization": getattr(variant, "quantization", None),
    }
    if variant is not None:
        settings["changed"] = variant.changed()
    result = recipes.RecipeResult(name, description, settings, warmup)
    return Entry(result, trainer, clock, timed, steps)


def build_classic(bench: Bench, *, warmup: int, timed: int, order: list[int] | None) -> Entry:
    """The classic recipe (full fine-tuning of the fp32 model), ready to race."""
    model = recipes.fresh(bench.base_fp32)
    steps = warmup + timed + 1
    clock = recipes.StepClock("classic", memory_step=steps)
    batch = course_batch_size()
    trainer = recipes.classic_trainer(
        model,
        bench.tokenizer,
        bench.classic_data,
        str(bench.workdir / "classic"),
        steps,
        clock,
        batch_size=batch,
        order=order,
    )
    settings = {
        "batch_size": batch,
        "max_length": recipes.CLASSIC_LENGTH,
        "padding": "max_length",
        "full_finetuning": True,
        "bf16": False,
        "attention": model.config._attn_implementation,
        "optimizer": str(trainer.args.optim),
    }
    description = f"Trainer, full fine-tune, fp32, padded to {recipes.CLASSIC_LENGTH}"
    result = recipes.RecipeResult("classic", description, settings, warmup)
    return Entry(result, trainer, clock, timed, steps)


def race(name: str, entries: list[Entry], probe, results: dict) -> None:
    """Train the entries with their steps interleaved, the probe between them; store it all."""
    turnstile = recipes.Turnstile()
    for e in entries:
        e.clock.turnstile = turnstile
    samples = recipes.train_in_turns(
        {e.result.name: e.trainer for e in entries}, turnstile, probe=probe
    )
    results["races"][name] = probe_summary(samples)
    for e in entries:
        recipes.summarize(e.result, e.trainer, e.clock, timed=e.timed, memory_step=e.memory_step)
        results["recipes"][e.result.name] = {**e.result.as_dict(), "race": name}
    entries.clear()
    gc.collect()


def probe_summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"probe": samples}
    for dtype in ("fp32", "bf16"):
        values = [s[dtype] for s in samples if dtype in s]
        if values:
            out[f"{dtype}_median"] = statistics.median(values)
    return out


def train_chapter00(
    model_name: str, train, rows, workdir: Path, plan: Plan, probe, deadline: float | None
):
    """Chapter 00's recipe, checked every few steps until teacher-forced exact match >= 80%.

    Training also stops at `deadline` (a ``time.perf_counter()`` value), so that a very
    busy machine cannot push the whole run past its time budget.
    """
    from helpers.models import load_model

    model, tokenizer = load_model(model_name, quantization=CHAPTER00["quantization"])
    footprint = model.get_memory_footprint()
    clock = recipes.StepClock("chapter 00")
    watcher = QualityWatcher(
        tokenizer,
        rows,
        clock,
        every=plan.ttq_every,
        trigger_token_accuracy=plan.ttq_trigger,
        deadline=deadline,
    )
    prober = recipes.ProbeEvery(clock, probe, every=plan.ttq_every)
    trainer = yoda_trainer(
        model,
        tokenizer,
        train,
        workdir / "chapter00",
        CHAPTER00,
        callbacks=[clock, watcher, prober],
        max_steps=plan.ttq_max_steps,
        disable_tqdm=True,
    )
    args = trainer.args
    recipes.quiet(trainer)
    trainer.data_collator = recipes.BatchRecorder(trainer.data_collator)
    result = recipes.RecipeResult(
        "chapter00",
        "chapter 00 (time to quality): 4-bit base + LoRA r=16, batch 4",
        {
            "quantization": "4bit",
            "batch_size": CHAPTER00["per_device_train_batch_size"],
            "lora_r": CHAPTER00["lora_r"],
            "bf16": bool(args.bf16),
        },
        plan.warmup,
    )
    trainer.train()
    recipes.summarize(result, trainer, clock, timed=10**9, memory_step=None)
    steps_run = len(clock.wall)
    reached = watcher.reached_step is not None
    train_seconds = (
        next(c.train_seconds for c in watcher.checks if c.step == watcher.reached_step)
        if reached
        else sum(clock.wall)
    )
    median_wall = statistics.median(clock.wall[plan.warmup :] or clock.wall)
    full_run = sum(clock.wall) + (plan.ttq_max_steps - steps_run) * median_wall
    quality: dict[str, Any] = {
        "target": watcher.target,
        "reached": reached,
        "step": watcher.reached_step,
        "train_seconds": train_seconds,
        "max_steps": plan.ttq_max_steps,
        "steps_run": steps_run,
        "stopped_by_budget": watcher.stopped_by_deadline,
        "full_run_seconds": full_run,
        "ratio": train_seconds / full_run if reached else None,
        "rows": f"the first {len(rows)} sentences of the Yoda test split",
        "check_every": plan.ttq_every,
        "trigger_token_accuracy": plan.ttq_trigger,
        "checks": [c.__dict__ for c in watcher.checks],
        "token_accuracy": watcher.token_accuracy,
        "check_seconds": sum(c.seconds for c in watcher.checks),
    }
    return result, quality, footprint, prober.samples, trainer, tokenizer


def confirm_by_generation(quality: dict, trainer, tokenizer, rows) -> None:
    """Score the trained model as the chapter does (generation, exact match)."""
    from helpers import evaluation

    start = time.perf_counter()
    scored = evaluation.evaluate_task(trainer.model, tokenizer, rows)
    quality["generated_accuracy"] = scored.accuracy
    quality["generated_seconds"] = time.perf_counter() - start
    print(f"  generated exact match after step {quality['steps_run']}: {scored.accuracy:.0%}")


# --- goals and verdicts ---------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def best_peaks(results: dict) -> dict[str, float]:
    """The best matmul figure seen in the run for each dtype: the machine's limit."""
    out: dict[str, float] = {}
    for dtype in ("fp32", "bf16"):
        seen = [s[dtype] for race in results["races"].values() for s in race["probe"] if dtype in s]
        if dtype in results["matmul"]:
            seen.append(results["matmul"][dtype]["flops_per_s"])
        if seen:
            out[dtype] = max(seen)
    return out


def utilization(results: dict) -> None:
    """Each recipe's FLOP/s against the matmul peak sampled in the same moments, and the best."""
    peaks = results["peaks"]
    for r in results["recipes"].values():
        dtype = "bf16" if r["settings"].get("bf16") else "fp32"
        race = results["races"].get(r.get("race"), {})
        r["dtype"] = dtype
        r["utilization"] = _ratio(r["summary"]["flops_per_s"], race.get(f"{dtype}_median"))
        r["utilization_of_best_peak"] = _ratio(r["summary"]["flops_per_s"], peaks.get(dtype))


def goals(results: dict, course: dict | None) -> dict[str, Any]:
    recs = results["recipes"]
    c, k = recs["course"], recs["classic"]
    cs, ks = c["summary"], k["summary"]
    speedup = _ratio(cs["useful_tokens_per_s"], ks["useful_tokens_per_s"])
    proposed = recs.get("proposed", {}).get("summary", {}).get("useful_tokens_per_s")
    proposed_speedup = _ratio(proposed, ks["useful_tokens_per_s"])
    race = results["races"][c["race"]]
    memory = _ratio(
        (c.get("memory") or {}).get("peak_bytes"), (k.get("memory") or {}).get("peak_bytes")
    )
    fp = results["footprint"]
    footprint = _ratio(fp.get("bytes_4bit"), fp.get("bytes_fp32"))
    return {
        "throughput": {
            "course": cs["useful_tokens_per_s"],
            "classic": ks["useful_tokens_per_s"],
            "ratio": speedup,
            "course_examples": cs["examples_per_s"],
            "classic_examples": ks["examples_per_s"],
            "examples_ratio": _ratio(cs["examples_per_s"], ks["examples_per_s"]),
            "goal": GOAL_SPEEDUP,
            "met": None if speedup is None else speedup >= GOAL_SPEEDUP,
            "proposed": proposed,
            "proposed_description": proposal().description,
            "proposed_ratio": proposed_speedup,
            "proposed_met": None if proposed_speedup is None else proposed_speedup >= GOAL_SPEEDUP,
        },
        "utilization": {
            "dtype": c["dtype"],
            "course_flops": cs["flops_per_s"],
            "classic_flops": ks["flops_per_s"],
            "peak_flops": race.get(f"{c['dtype']}_median"),
            "best_peak_flops": results["peaks"].get(c["dtype"]),
            "ratio": c["utilization"],
            "ratio_of_best_peak": c["utilization_of_best_peak"],
            "classic_ratio": k["utilization"],
            "goal": GOAL_UTILIZATION,
            "met": None if c["utilization"] is None else c["utilization"] >= GOAL_UTILIZATION,
        },
        "memory": {
            "course_bytes": (c.get("memory") or {}).get("peak_bytes"),
            "classic_bytes": (k.get("memory") or {}).get("peak_bytes"),
            "ratio": memory,
            "met": None if memory is None else memory < 1,
        },
        "footprint": {
            **fp,
            "ratio": footprint,
            "goal": GOAL_FOOTPRINT,
            "met": None if footprint is None else footprint <= GOAL_FOOTPRINT,
        },
        "time_to_quality": dict(results["time_to_quality"]),
        "course": course,
    }


def _speed(results: dict, name: str) -> float | None:
    r = results["recipes"].get(name)
    return None if r is None else r["summary"]["useful_tokens_per_s"]


def _peak_bytes(results: dict, name: str) -> int | None:
    return (results["recipes"].get(name, {}).get("memory") or {}).get("peak_bytes")


def tuning(results: dict, skipped: dict[str, str], variant_list: list[Variant]) -> list[dict]:
    """One line per default: what the run measured, and what it says about the default."""
    rows = []
    kernels = results["matmul"]
    for v in variant_list:
        base = baseline_name(v, results)
        ratio = _ratio(_speed(results, v.name), _speed(results, base))
        measured = f"useful tokens/s {ratio:.2f}×" if ratio is not None else None
        mem = _ratio(_peak_bytes(results, v.name), _peak_bytes(results, base))
        if measured and mem is not None:
            measured += f", peak memory {mem:.2f}×"
        measured, said = v.judge(results, measured or skipped.get(v.name, "not run"), ratio, mem)
        rows.append(
            {
                "name": v.name,
                "setting": v.setting,
                "default": v.default,
                "alternative": v.alternative,
                "compared_with": base,
                "ratio": ratio,
                "memory_ratio": mem,
                "measured": measured,
                "verdict": said,
            }
        )
    if "threads" in kernels:
        t = kernels["threads"]
        ratio = _ratio(t["one_thread_flops_per_s"], t["default_flops_per_s"])
        rows.append(
            {
                "name": "threads",
                "setting": "threads",
                "default": f"torch's default ({t['default']})",
                "alternative": "1",
                "ratio": ratio,
                "measured": f"fp32 matmul peak {ratio:.2f}×",
                "verdict": verdict(ratio, "switch to 1 thread", f"{t['default']} threads"),
            }
        )
    head = kernels.get("loss_head")
    if head:
        ratio = _ratio(head["fused_seconds"], head["plain_seconds"])
        rows.append(
            {
                "name": "loss_head",
                "setting": "loss over the vocabulary",
                "default": "trl's chunked LM head (SFTTrainer)",
                "alternative": "full logits + cross-entropy",
                "ratio": ratio,
                "measured": f"full logits {ratio:.2f}× as fast ({head['plain_seconds']:.2f} s vs "
                f"{head['fused_seconds']:.2f} s, forward + backward, {head['tokens']} tokens)",
                "verdict": verdict(
                    ratio,
                    "full logits are faster here than trl's head; the course's loss needs "
                    "neither (the trl_head variant measures trl's way)",
                    "trl's head",
                ),
            }
        )
    if not any(isinstance(v, Compile) for v in variant_list):
        rows.append(
            {
                "name": "compile",
                "setting": "torch.compile",
                "default": "off",
                "alternative": "on",
                "ratio": None,
                "measured": "not in `make bench` (compiling alone takes minutes): "
                "`python -m tools.bench --variants compile --out bench/compile` measures it, "
                "see bench/compile/results.md",
                "verdict": "keep off (bench/compile/results.md)",
            }
        )
    return rows


# --- the sections, in order -----------------------------------------------------------------


def setup(bench: Bench) -> None:
    """1. The course's model (and an fp32 one where that differs), the data, the padded text."""
    from helpers.data import load_dataset
    from helpers.models import load_model

    bench.base, bench.tokenizer = load_model(bench.model_name)  # the course's default dtype
    bench.base_fp32 = bench.base  # the classic recipe's: the same model on a CPU
    if bench.base.dtype != torch.float32:  # a GPU with native bf16
        bench.base_fp32, _ = load_model(bench.model_name, dtype=torch.float32)
    bench.data = load_dataset("yoda")
    bench.classic_data = recipes.classic_dataset(bench.tokenizer, bench.data["train"])
    bench.bf16_default = bool(training.sft_config(str(bench.workdir / "probe")).bf16)


def kernels(bench: Bench) -> None:
    """2. The matmul peaks, bf16 against fp32, and the loss head two ways."""
    head_tokens = course_batch_size() * 50  # a typical padded Yoda batch
    bench.results["matmul"] = measure_kernels(
        bench.plan, bench.device, bench.base.get_output_embeddings().weight, head_tokens
    )


def course_vs_classic(bench: Bench) -> None:
    """3. The course recipe, the classic one and the proposed change, raced (goals 1-3)."""
    plan = bench.plan
    course = build_course(
        bench,
        "course",
        "helpers' defaults: LoRA r=16, SFTTrainer",
        warmup=plan.warmup,
        timed=plan.course_steps,
    )
    proposed = proposal()
    classic = build_classic(
        bench,
        warmup=plan.warmup,
        timed=plan.classic_steps,
        order=recipes.first_epoch_order(course.trainer),
    )
    entries = [
        course,
        classic,
        build_course(
            bench,
            "proposed",
            f"course recipe with {proposed.description} (proposed)",
            warmup=plan.warmup,
            timed=plan.course_steps,
            variant=proposed,
        ),
    ]
    race("course vs classic", entries, bench.probe, bench.results)


def time_to_quality(bench: Bench) -> None:
    """4. Chapter 00's recipe until 80% exact match (goal 4), and the 4-bit footprint."""
    results, plan, runner = bench.results, bench.plan, bench.runner
    test = bench.data["test"]
    bench.rows = test.select(range(min(plan.ttq_rows, len(test))))
    results["footprint"] = {
        "bytes_fp32": bench.base_fp32.get_memory_footprint(),
        "bytes_4bit": None,
    }
    if not four_bit_here(bench.device):
        results["time_to_quality"] = {
            "skipped": "bitsandbytes 4-bit is not available on this device"
        }
        return
    # Whatever the load, stop in time to write the results.
    deadline = None if runner.budget is None else runner.start + runner.budget - 30
    result, quality, footprint, samples, trainer, tokenizer = train_chapter00(
        bench.model_name,
        bench.data["train"],
        bench.rows,
        bench.workdir,
        plan,
        bench.probe,
        deadline,
    )
    results["recipes"]["chapter00"] = {**result.as_dict(), "race": "time to quality"}
    results["races"]["time to quality"] = probe_summary(samples)
    results["footprint"]["bytes_4bit"] = footprint
    results["time_to_quality"] = quality
    bench.chapter00 = (trainer, tokenizer)


def choose_variants(bench: Bench, wanted: list[str] | tuple[str, ...] | None, with_compile: bool):
    """5a. The variants asked for that fit in the time left; the others are noted as skipped."""
    plan = bench.plan
    bench.variant_list = [
        v
        for v in variants(bench.bf16_default, with_compile or "compile" in (wanted or ()))
        if (wanted is None or v.name in wanted)
        and (four_bit_here(bench.device) or not v.quantization)
    ]
    course_step = bench.results["recipes"]["course"]["summary"]["step_seconds"]
    per_recipe = plan.warmup + plan.variant_steps + 1
    planned = per_recipe * course_step + 10  # the reference run
    chosen: list[Variant] = []
    for v in bench.variant_list:
        predicted = per_recipe * course_step * v.expected_cost(bench.results["matmul"]) + 5
        if bench.runner.fits(planned + predicted):
            chosen.append(v)
            planned += predicted
        else:
            bench.skipped[v.name] = f"not run: about {predicted:.0f} s, over the time budget"
            print(f"skipping variant {v.name}: {bench.skipped[v.name]}")
    return chosen


def tuning_variants(bench: Bench, chosen: list[Variant]) -> None:
    """5b. The course recipe again beside copies of it with one default flipped, raced."""
    # every recipe of the race is timed on the same steps, so the same batches
    warmup = bench.plan.warmup + max(v.warmup for v in chosen)
    timed = bench.plan.variant_steps
    environment: dict[str, str] = {}
    for v in chosen:
        environment.update(v.environment(bench.workdir))
    with scoped_environ(environment):
        entries = [
            build_course(
                bench,
                "reference",
                "the course recipe again, beside the variants",
                warmup=warmup,
                timed=timed,
            )
        ]
        for v in chosen:
            description = f"course recipe with {v.description}"
            entries.append(
                build_course(bench, v.name, description, warmup=warmup, timed=timed, variant=v)
            )
        race("tuning variants", entries, bench.probe, bench.results)


def confirm(bench: Bench) -> None:
    """6. The chapter's own score of the model from section 4, if there is time left."""
    if bench.chapter00 is None:
        return
    trainer, tokenizer = bench.chapter00
    bench.chapter00 = None
    quality = bench.results["time_to_quality"]
    checks = quality["checks"]
    per_check = statistics.mean([c["seconds"] for c in checks]) if checks else 30.0
    if bench.runner.fits(3 * per_check + 10):
        with bench.runner.section("confirm by generation"):
            confirm_by_generation(quality, trainer, tokenizer, bench.rows)
    else:
        quality["generated_accuracy"] = None
        quality["generated_skipped"] = "over the time budget"
    del trainer
    gc.collect()


def conclude(bench: Bench) -> None:
    """Peaks, utilization and the tuning table, from what the sections measured."""
    results = bench.results
    results["peaks"] = best_peaks(results)
    utilization(results)
    results["skipped"] = bench.skipped
    results["tuning"] = tuning(results, bench.skipped, bench.variant_list)
    results["meta"]["load_end"] = load_average()
    results["meta"]["seconds"] = bench.runner.elapsed()
    results["sections"] = bench.runner.sections


def run_budget(plan: Plan, budget: float | None, compiles: bool) -> float | None:
    """Seconds for the run (None: no limit); see :func:`run`."""
    if compiles and budget is None:
        budget = 0  # compiling takes minutes; the budget would always leave it out
    return plan.budget if budget is None else (budget or None)


def run(
    model_name: str = DEFAULT_MODEL,
    *,
    quick: bool = False,
    out_dir: str | Path = DEFAULT_OUT,
    budget: float | None = None,
    with_compile: bool = False,
    only_variants: list[str] | None = None,
) -> dict[str, Any]:
    """Run every section; write results.json and results.md under `out_dir`; return the results.

    budget: seconds for the whole run (None: the plan's; 0: no limit). The sections that
    the goals need always run; tuning variants and the final confirmation by generation
    run only if they fit. with_compile: add the torch.compile variant (and lift the
    budget unless one is given). only_variants: run these tuning variants only.
    """
    plan = QUICK if quick else FULL
    wanted = only_variants if only_variants is not None else plan.variants
    budget = run_budget(plan, budget, with_compile or "compile" in (only_variants or ()))
    device = hardware.device_name()
    torch.manual_seed(0)
    runner = Runner(budget)
    results: dict[str, Any] = {
        "meta": machine_meta(model_name, quick, device),
        "plan": plan.__dict__,
        "recipes": {},
        "races": {},
    }
    probe = make_probe(plan, device)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(model_name, plan, device, runner, Path(tmp), probe, results)
        with runner.section("setup"):
            setup(bench)
        with runner.section("kernels"):
            kernels(bench)
        with runner.section("course vs classic"):  # goals 1, 2, 3
            course_vs_classic(bench)
        with runner.section("time to quality"):  # goal 4, and the 4-bit footprint
            time_to_quality(bench)
        chosen = choose_variants(bench, wanted, with_compile)
        if chosen:
            with runner.section("tuning variants"):
                tuning_variants(bench, chosen)
        confirm(bench)  # last, if there is time
    conclude(bench)
    write(results, out_dir)
    return results


def mark_busy(results: dict) -> None:
    """Flag the sections whose matmul figures ran below BUSY × the run's best."""
    best = results["peaks"].get("fp32")
    for probed in results["races"].values():
        median = probed.get("fp32_median")
        probed["busy"] = bool(median and best and median < BUSY * best)
    kernels = results["matmul"]["fp32"]["flops_per_s"]
    results["matmul"]["busy"] = bool(best and kernels < BUSY * best)


def rewrite(out_dir: str | Path) -> tuple[Path, Path]:
    """Render results.md again from results.json (and course.json, if there is one)."""
    results = json.loads((Path(out_dir) / "results.json").read_text())
    return write(results, out_dir)


def _read_json(out_dir: str | Path, name: str) -> dict | None:
    path = Path(out_dir) / name
    return json.loads(path.read_text()) if path.exists() else None


def read_course(out_dir: str | Path) -> dict | None:
    """``course.json`` (``python -m tools.bench course``), if any."""
    return _read_json(out_dir, "course.json")


def read_profile(out_dir: str | Path) -> dict | None:
    """``profile.json`` (``python -m tools.bench profile``, :mod:`.step_profile`), if any."""
    return _read_json(out_dir, "profile.json")


def write(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write results.json and results.md (with course.json's figures when it exists)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mark_busy(results)
    course = read_course(out)
    results["goals"] = goals(results, course)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_clean(results), indent=2, allow_nan=False) + "\n")
    md_path = out / "results.md"
    md_path.write_text(report.render(results, course, read_profile(out)))
    return json_path, md_path


def _clean(value):
    """JSON-ready: NaN and infinities become null, tuples lists, paths and dtypes strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (Path, torch.dtype)):
        return str(value)
    return value
