"""The two recipes the benchmark races, and how their steps are timed and counted.

**The course's recipe** is what the helpers configure by default: the fp32 model with
SDPA attention (``load_model``), LoRA r=16 on every linear layer (``lora_config``) and
``SFTTrainer`` with ``sft_config``'s defaults (batch 8, sequences cut at 128 tokens,
padded only to the longest in the batch, loss on the completion only, bf16 autocast
only where the hardware has it, no gradient checkpointing).

**The classic recipe** is the one of the seed walkthrough that fine-tunes GPT-2 on a
CPU: full fine-tuning in fp32 with ``Trainer``, every example padded to 128 tokens
(``padding="max_length"``), labels from ``DataCollatorForLanguageModeling(mlm=False)``
(every non-padding token carries loss, the prompt included).

Both see the same text: the Yoda training conversations (system, user and assistant
turns) rendered by the chat template, and, with the same seed, the same examples in
the same order, 8 per step.

What is counted, per step, from the batch the model received (``BatchRecorder``):

- *tokens*: non-padding tokens; *executed* tokens: every position, padding included;
- *loss tokens*: tokens whose label is not -100 (they carry loss);
- *useful tokens*: loss tokens of the answer (the completion): neither padding nor prompt.
  The classic recipe's useful tokens are its loss tokens after the prompt; the course
  recipe's loss tokens are all useful, because trl masks the prompt. SmolLM2's pad token
  is its end-of-turn token, so the classic collator also masks the end of every answer:
  one useful token fewer per example (the model never learns to stop). Examples per
  second, which that does not touch, are reported beside useful tokens per second.

Timing (``StepClock``): each optimizer step from its start to its end (forward, backward,
clipping, the optimizer), inside the real ``Trainer.train()`` loop. The recipes being
compared train at the same time, in threads that take their steps in turn
(:class:`Turnstile`), so that a burst of load from other processes hits all of them
(memory-bound steps, like full fine-tuning's optimizer, still suffer more: figures from
a busy machine lean towards the course recipe). The first step warms up (it creates the
optimizer's state) and is left out; the figures are medians of the timed steps. One
more step is run under :class:`helpers.memory.MemoryTracker` for the peak memory; it is
not timed, because tracking every operation slows it down.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from helpers import hardware, training
from helpers.chat import prompt_length

from .flops import matmul_shape, training_step_flops

CLASSIC_LENGTH = 128


@dataclass
class BatchStats:
    """What one batch held (see the module docstring for each count)."""

    rows: int
    columns: int
    examples: int
    tokens: int
    loss_tokens: int
    useful_tokens: int
    completion_tokens: int
    row_lengths: list[int]

    @property
    def executed_tokens(self) -> int:
        return sum(self.row_lengths)


class BatchRecorder:
    """Wraps a data collator and records what each batch holds, in order.

    With ``prompt_column`` (the classic recipe), each example carries the length of its
    prompt in that column; it is removed before collating and used to tell the answer's
    tokens from the prompt's.
    """

    def __init__(self, collator, prompt_column: str | None = None):
        self.collator = collator
        self.prompt_column = prompt_column
        self.batches: list[BatchStats] = []

    def __call__(self, features: list[dict[str, Any]]):
        prompt_lengths = None
        if self.prompt_column is not None:
            prompt_lengths = [int(f.pop(self.prompt_column)) for f in features]
        batch = self.collator(features)
        self.batches.append(batch_stats(batch, prompt_lengths))
        return batch


def batch_stats(batch, prompt_lengths: list[int] | None = None) -> BatchStats:
    """Count a collated batch (padded, or padding-free with ``position_ids``)."""
    labels = batch["labels"]
    rows, columns = labels.shape
    loss = labels != -100
    if "attention_mask" in batch:
        real = batch["attention_mask"].bool()
        examples = rows
        row_lengths = [columns] * rows
    else:  # padding-free: one row of sequences, each starting at position 0
        real = torch.ones_like(loss)
        examples = int((batch["position_ids"] == 0).sum())
        row_lengths = [columns] * rows
    if prompt_lengths is None:
        answer = loss
        completion = loss
    else:
        positions = torch.arange(columns).unsqueeze(0)
        after_prompt = positions >= torch.tensor(prompt_lengths).unsqueeze(1)
        answer = loss & after_prompt
        completion = real & after_prompt
    return BatchStats(
        rows=rows,
        columns=columns,
        examples=examples,
        tokens=int(real.sum()),
        loss_tokens=int(loss.sum()),
        useful_tokens=int(answer.sum()),
        completion_tokens=int(completion.sum()),
        row_lengths=row_lengths,
    )


class Turnstile:
    """Lets trainers running in threads take their optimizer steps in turn, one at a time.

    On a shared machine the load drifts over minutes: a recipe timed now and another
    timed five minutes later are not compared fairly. Interleaving their steps (A, B, C,
    A, B, C, ...) gives each recipe the same mix of quiet and busy moments, so their
    ratio holds even when the absolute figures move.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._turn = 0

    def enter(self, name: str) -> None:
        with self._cond:
            self._queue.append(name)

    def wait(self, name: str) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue[self._turn] == name)

    def done(self, name: str) -> None:
        with self._cond:
            self._turn = (self._queue.index(name) + 1) % len(self._queue)
            self._cond.notify_all()

    def others(self, name: str) -> int:
        """How many other participants are still in the rotation."""
        with self._cond:
            return sum(1 for n in self._queue if n != name)

    def leave(self, name: str) -> None:
        with self._cond:
            if name not in self._queue:
                return
            current = self._queue[self._turn]
            index = self._queue.index(name)
            self._queue.remove(name)
            if self._queue:
                self._turn = (
                    index % len(self._queue) if current == name else self._queue.index(current)
                )
            self._cond.notify_all()


class StepClock(TrainerCallback):
    """Times every optimizer step; measures the memory of one chosen step.

    For each step it records ``seconds`` (from the step's start to its end: forward,
    backward, clipping, optimizer) and ``wall`` (from the end of the previous step,
    so collating the batch and logging are included, minus the time spent inside
    ``with clock.paused():``, such as an evaluation between steps). With a
    :class:`Turnstile`, a step starts only when it is this trainer's turn.
    """

    def __init__(self, label: str, memory_step: int | None = None, echo: bool = True):
        self.label = label
        self.memory_step = memory_step
        self.turnstile: Turnstile | None = None  # set by the race that interleaves it
        self.echo = echo
        self.seconds: list[float] = []
        self.wall: list[float] = []
        self.memory = None
        self._own_bytes = 0
        self._tracker = None
        self._last = self._begin = 0.0
        self._paused = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()
        self._paused = 0.0

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.turnstile is not None:
            waited = time.perf_counter()
            self.turnstile.wait(self.label)
            self._paused += time.perf_counter() - waited
        if self.memory_step is not None and state.global_step + 1 == self.memory_step:
            from helpers.memory import MemoryTracker, tensor_bytes

            # Its own weights and optimizer state: on a GPU the allocator's counters also
            # see the other recipes of a race, so only the rise above them is kept.
            self._own_bytes = tensor_bytes(model, optimizer)
            self._tracker = MemoryTracker(model, optimizer)
            self._tracker.__enter__()
        self._begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)
            self.memory = self._tracker.result
            self._tracker = None
        self.seconds.append(now - self._begin)
        self.wall.append(now - self._last - self._paused)
        self._last, self._paused = now, 0.0
        if self.echo:
            note = " (memory tracked)" if state.global_step == self.memory_step else ""
            print(
                f"  {self.label}: step {state.global_step}/{state.max_steps} "
                f"{self.seconds[-1]:.1f} s{note}",
                flush=True,
            )
        if self.turnstile is not None:
            self.turnstile.done(self.label)

    @contextlib.contextmanager
    def paused(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - start


def train_in_turns(
    trainers: dict[str, Any], turnstile: Turnstile, probe: Callable[[], float] | None = None
) -> list[float]:
    """Train every trainer in its own thread, their steps interleaved by `turnstile`.

    Each trainer's StepClock must use `turnstile` under the trainer's name. `probe` (a
    matmul peak measurement, FLOP/s) takes a turn of its own in every round, so the
    machine's peak is sampled in the same moments as the steps; its figures are
    returned. An error in one trainer is raised here once the others have finished.
    """
    errors: list[BaseException] = []
    samples: list[float] = []
    finished = threading.Event()

    def work(name, trainer):
        try:
            trainer.train()
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)
        finally:
            turnstile.leave(name)

    def measure():
        try:
            while not finished.is_set() and turnstile.others("probe"):
                turnstile.wait("probe")
                if turnstile.others("probe"):  # not after the last trainer has left
                    samples.append(probe())
                turnstile.done("probe")
        finally:
            turnstile.leave("probe")

    for name in trainers:
        turnstile.enter(name)
    threads = [
        threading.Thread(target=work, args=(name, t), name=f"bench-{name}", daemon=True)
        for name, t in trainers.items()
    ]
    if probe is not None:
        turnstile.enter("probe")
        prober = threading.Thread(target=measure, name="bench-probe", daemon=True)
        prober.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished.set()
    if probe is not None:
        prober.join()
    if errors:
        raise errors[0]
    return samples


class ProbeEvery(TrainerCallback):
    """Samples the matmul peak every `every` steps of a single trainer, off its clock."""

    def __init__(self, clock: StepClock, probe: Callable[[], float], every: int):
        self.clock, self.probe, self.every = clock, probe, every
        self.samples: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            with self.clock.paused():
                self.samples.append(self.probe())


def quiet(trainer) -> None:
    """Drop the progress bar and the printed log lines: the clock prints one line a step."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


# --- the recipes ------------------------------------------------------------------------------


def course_trainer(model, tokenizer, train, output_dir: str, max_steps: int, clock, **overrides):
    """The course's recipe: ``build_trainer`` with ``lora_config()`` and ``sft_config()``.

    `overrides` change ``SFTConfig`` fields against the default (a tuning variant).
    ``padding_free=True`` also drops ``max_length``, as trl requires without packing
    (``sft_config`` insists on one; the Yoda examples are at most 70 tokens, so no
    example is cut either way). ``lm_head="trl"`` gives trl's loss instead of the
    course's, ``batch_order="bucketed"`` batches of similar lengths (see
    ``helpers.training.build_trainer``).
    """
    padding_free = overrides.pop("padding_free", False)
    # Only what a variant names is passed on: everything else is build_trainer's default,
    # so that the "course" recipe is always the one the notebooks get.
    trainer_choices = {k: overrides.pop(k) for k in ("lm_head", "batch_order") if k in overrides}
    args = training.sft_config(output_dir, max_steps=max_steps, disable_tqdm=True, **overrides)
    if padding_free:
        args.padding_free, args.max_length = True, None
    trainer = training.build_trainer(
        model,
        tokenizer,
        train,
        args,
        peft_config=training.lora_config(),
        callbacks=[clock],
        **trainer_choices,
    )
    quiet(trainer)
    trainer.data_collator = BatchRecorder(trainer.data_collator)
    return trainer


def classic_dataset(tokenizer, train, max_length: int = CLASSIC_LENGTH):
    """The same conversations as plain text, each padded to `max_length` tokens."""
    from datasets import Dataset

    texts, prompt_lengths = [], []
    for row in train:
        texts.append(
            tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        )
        prompt_lengths.append(prompt_length(tokenizer, row))
    encoded = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True)
    return Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "prompt_length": prompt_lengths,
        }
    )


def first_epoch_order(trainer) -> list[int] | None:
    """The order in which `trainer` will see its examples, when it is seeded (bucketed)."""
    if not getattr(trainer, "bucketed_batches", False):
        return None  # transformers' shuffle: the same seed gives both recipes the same order
    return list(trainer._get_train_sampler())  # a fresh sampler: the trainer's own is unchanged


def classic_trainer(
    model,
    tokenizer,
    dataset,
    output_dir: str,
    max_steps: int,
    clock,
    batch_size: int = 8,
    order: list[int] | None = None,
):
    """The classic recipe: ``Trainer``, full fine-tuning, fp32, fixed-length padded text.

    `order`: the course recipe's order of examples, so that both see the same examples
    in the same steps (every classic example is padded to the same length, so the
    order does not change its cost).
    """
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=5e-5,
        use_cpu=hardware.device_name() == "cpu",
        report_to="none",
        save_strategy="no",
        logging_steps=5,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # keeps prompt_length for the BatchRecorder, which drops it
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[clock],
    )
    quiet(trainer)
    trainer.data_collator = BatchRecorder(trainer.data_collator, prompt_column="prompt_length")
    if order is not None:
        trainer._get_train_sampler = lambda train_dataset=None: list(order)
    return trainer


# --- running one and summarising it ---------------------------------------------------------


@dataclass
class RecipeResult:
    """Everything measured about one recipe, ready for results.json."""

    name: str
    description: str
    settings: dict[str, Any]
    warmup: int
    steps: list[dict[str, Any]] = field(default_factory=list)  # every step, warm-up included
    shape: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] | None = None
    seconds: float = 0.0  # wall time of the whole section (loading and building included)

    def timed(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if s["timed"]]

    def median(self, key: str) -> float:
        values = [s[key] for s in self.timed()]
        return statistics.median(values) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        """Medians over the timed steps of each per-step rate."""
        return {
            "step_seconds": self.median("seconds"),
            "useful_tokens_per_s": self.median("useful_tokens_per_s"),
            "loss_tokens_per_s": self.median("loss_tokens_per_s"),
            "tokens_per_s": self.median("tokens_per_s"),
            "executed_tokens_per_s": self.median("executed_tokens_per_s"),
            "examples_per_s": self.median("examples_per_s"),
            "flops_per_s": self.median("flops_per_s"),
            "useful_tokens_per_step": self.median("useful_tokens"),
            "executed_tokens_per_step": self.median("executed_tokens"),
            "timed_steps": len(self.timed()),
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out


def summarize(
    result: RecipeResult, trainer, clock: StepClock, *, timed: int, memory_step: int | None
) -> RecipeResult:
    """Turn a trained trainer's clock and batch records into per-step records."""
    recorder: BatchRecorder = trainer.data_collator
    shape = matmul_shape(trainer.model)
    checkpointing = bool(getattr(trainer.args, "activation_checkpointing", False)) or bool(
        getattr(trainer.args, "gradient_checkpointing", False)
    )
    answer_only = training.uses_scored_head(trainer)
    head_recompute = _fuses_lm_head(trainer) and not answer_only
    result.shape = {
        **shape.as_dict(),
        "checkpointing": checkpointing,
        "head_recompute": head_recompute,
        "head_on_loss_tokens_only": answer_only,
    }
    for index, (seconds, wall) in enumerate(zip(clock.seconds, clock.wall, strict=True)):
        stats = recorder.batches[index]
        flops = training_step_flops(
            shape,
            stats.row_lengths,
            checkpointing=checkpointing,
            head_recompute=head_recompute,
            head_tokens=stats.loss_tokens if answer_only else None,
        )
        step = index + 1
        record = {
            "step": step,
            "seconds": seconds,
            "wall": wall,
            "timed": result.warmup < step <= result.warmup + timed,
            "memory_tracked": step == memory_step,
            **{k: v for k, v in asdict(stats).items() if k != "row_lengths"},
            "executed_tokens": stats.executed_tokens,
            "flops": flops.total,
            "flops_by_part": flops.as_dict(),
        }
        for key in ("useful_tokens", "loss_tokens", "tokens", "executed_tokens", "examples"):
            record[f"{key}_per_s"] = record[key] / seconds
        record["flops_per_s"] = flops.total / seconds
        result.steps.append(record)
    if clock.memory is not None:
        m = clock.memory
        result.memory = {
            "method": m.method,
            "baseline_bytes": clock._own_bytes,  # weights, adapters, optimizer state
            "peak_bytes": clock._own_bytes + m.added_bytes,
            "rss_peak_bytes": m.rss_peak,  # the whole process: every recipe of the race
        }
    return result


def _fuses_lm_head(trainer) -> bool:
    """trl's SFTTrainer scores tokens with a chunked LM head that recomputes in the backward."""
    try:
        from trl import SFTTrainer
    except ImportError:  # pragma: no cover - trl is pinned
        return False
    return isinstance(trainer, SFTTrainer)


def loss_head_seconds(weight, tokens: int, repeats: int = 3) -> dict[str, float]:
    """Forward + backward of the loss over the vocabulary, for `tokens` positions, two ways.

    ``fused``: trl's chunked LM head as ``SFTTrainer`` runs it (log-probabilities, entropy
    and top-1 metrics, logits recomputed in the backward pass instead of stored);
    ``plain``: the logits in full, then cross-entropy (what ``Trainer`` does). Best of
    `repeats`, in seconds, with the model's own output matrix (frozen, as with LoRA).
    """
    from trl.kernels import ChunkedLogProbFunction

    generator = torch.Generator().manual_seed(0)
    hidden = (0.5 * torch.randn(tokens, weight.shape[1], generator=generator)).to(weight.device)
    labels = torch.randint(0, weight.shape[0], (tokens,), generator=generator).to(weight.device)
    weight = weight.detach()

    def fused():
        h = hidden.clone().requires_grad_()
        outputs = ("log_probs", "entropy", "is_top1")
        log_probs = ChunkedLogProbFunction.apply(
            h, weight, None, labels, 1.0, 32768, None, 1.0, outputs
        )[0]
        (-log_probs.sum() / tokens).backward()

    def plain():
        h = hidden.clone().requires_grad_()
        logits = torch.nn.functional.linear(h, weight)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()

    from .matmul import best_seconds

    device = weight.device.type
    return {
        "tokens": tokens,
        "fused_seconds": best_seconds(fused, repeats, device),
        "plain_seconds": best_seconds(plain, repeats, device),
    }


def fresh(model):
    """An independent copy of a loaded model (LoRA and training change it in place)."""
    return copy.deepcopy(model)
