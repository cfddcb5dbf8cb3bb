"""Causal-LM training data and run control for chapter 06 (plain ``transformers.Trainer``).

Two ways to turn raw text into training examples:

- the classic recipe: every text padded (or cut) to one length and ``labels = input_ids``,
  padding included, so the model is also trained to predict padding;
- blocks: all texts concatenated (an end-of-text token between them) and cut into
  fixed-size blocks, so that no position is padding and every position is a useful token.

Plus the pieces a training run needs around ``Trainer``: a callback that stops a run at a
given step (as a crash would, to test resuming), a callback that times the steps (and can
stop a run when a time budget is spent, to compare recipes in the same wall time), the pad
token's probability (to see a model learn to emit padding) and a reader for TensorBoard
event files.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback

IGNORE_INDEX = -100


def padded_examples(tokenizer, texts: Sequence[str], max_length: int = 128) -> dict[str, list]:
    """The classic recipe: each text padded or cut to `max_length`, labels copied from input_ids.

    Padding positions keep their pad token id as a label, so the loss counts them: this is
    the mistake the chapter measures (fix it with :func:`mask_pad_labels` or use blocks).
    """
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first.")
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": [list(ids) for ids in enc["input_ids"]],
    }


def padding_share(examples: Mapping[str, Sequence[Sequence[int]]]) -> float:
    """Share of the loss-carrying positions that are padding (attention_mask 0, label kept).

    A position carries loss when its label is not -100. 0.0 means every scored
    position is a real token.
    """
    scored = padded = 0
    for labels, mask in zip(examples["labels"], examples["attention_mask"], strict=True):
        for label, m in zip(labels, mask, strict=True):
            if label != IGNORE_INDEX:
                scored += 1
                padded += m == 0
    if scored == 0:
        raise ValueError("no position carries loss: every label is -100.")
    return padded / scored


def mask_pad_labels(examples: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, list]:
    """The first fix: labels set to -100 wherever the attention mask is 0 (padding)."""
    labels = [
        [label if m else IGNORE_INDEX for label, m in zip(row, mask, strict=True)]
        for row, mask in zip(examples["labels"], examples["attention_mask"], strict=True)
    ]
    return {**examples, "labels": labels}


def group_texts(examples: Mapping[str, Sequence[Sequence[int]]], block_size: int = 128) -> dict:
    """The better fix: concatenate every column and cut it into blocks of `block_size`.

    The remainder shorter than a block is dropped; ``labels`` are a copy of the blocks of
    ``input_ids`` (the model shifts them by one itself). Works as a batched ``Dataset.map``.
    """
    if block_size < 2:
        raise ValueError(f"block_size={block_size} must be at least 2 (one input, one target).")
    columns = [c for c in examples if c != "labels"]
    joined = {c: [tok for row in examples[c] for tok in row] for c in columns}
    total = (len(joined[columns[0]]) // block_size) * block_size
    blocks = {
        c: [seq[i : i + block_size] for i in range(0, total, block_size)]
        for c, seq in joined.items()
    }
    blocks["labels"] = [list(b) for b in blocks["input_ids"]]
    return blocks


def tokenize_with_eos(tokenizer, texts: Sequence[str]) -> dict[str, list]:
    """Token ids of each text with the end-of-text token appended, ready for :func:`group_texts`.

    The end-of-text token marks where one document stops and the next begins inside a block.
    """
    enc = tokenizer(list(texts))
    eos = tokenizer.eos_token_id
    return {
        "input_ids": [ids + [eos] for ids in enc["input_ids"]],
        "attention_mask": [m + [1] for m in enc["attention_mask"]],
    }


class StopAtStep(TrainerCallback):
    """Stops training after optimizer step `step`, as a crash there would (for resume demos).

    Unlike a crash, ``trainer.train`` returns normally; the checkpoints saved so far are
    what a resumed run starts from.
    """

    def __init__(self, step: int):
        if step < 1:
            raise ValueError(f"step={step} must be at least 1.")
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


class StepTimer(TrainerCallback):
    """Times every optimizer step; with `budget` (seconds), stops a run before it overruns it.

    Only the steps are timed (not checkpoint saving, evaluation or start-up), so two runs
    compare by their training work. With a budget the run stops after the step at which
    one more typical step would go past it: two recipes get the same wall time, within a
    step. ``clock`` is for tests.
    """

    def __init__(self, budget: float | None = None, clock: Callable[[], float] = time.perf_counter):
        if budget is not None and budget <= 0:
            raise ValueError(f"budget={budget} must be a positive number of seconds (or None).")
        self.budget = budget
        self.clock = clock
        self.steps: list[float] = []
        self._start = 0.0

    @property
    def seconds(self) -> float:
        """Total time spent in the steps so far."""
        return sum(self.steps)

    @property
    def typical(self) -> float:
        """Median step time, leaving out the first step (it warms up caches and allocators)."""
        if not self.steps:
            raise ValueError("no step timed yet: train with this callback first.")
        return statistics.median(self.steps[1:] or self.steps)

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(self.clock() - self._start)
        if self.budget is not None and self.seconds + self.typical > self.budget:
            control.should_training_stop = True
        return control


@torch.no_grad()
def pad_probabilities(model, tokenizer, texts: Sequence[str], max_length: int = 128) -> dict:
    """Mean probability the model gives the pad token as the next token, at three places.

    ``inside``: at every position inside a text (where a real token follows);
    ``after_text``: right after the text's last token; ``after_pad``: after one pad token
    appended to the text. A model trained on padded labels learns the last two. Each text
    is cut to ``max_length - 1`` tokens and run on its own (no padding in the batch).
    """
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first.")
    if not texts:
        raise ValueError("texts is empty: pass at least one text.")
    device = next(model.parameters()).device
    inside, after_text, after_pad = [], [], []
    was_training = model.training
    model.eval()
    try:
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length - 1)["input_ids"]
            logits = model(input_ids=torch.tensor([ids + [pad]], device=device)).logits[0]
            p_pad = torch.softmax(logits.float(), dim=-1)[:, pad].tolist()
            inside += p_pad[: len(ids) - 1]
            after_text.append(p_pad[len(ids) - 1])
            after_pad.append(p_pad[len(ids)])
    finally:
        model.train(was_training)
    return {
        "inside": statistics.fmean(inside) if inside else float("nan"),
        "after_text": statistics.fmean(after_text),
        "after_pad": statistics.fmean(after_pad),
    }


def logged_losses(log_history: Iterable[Mapping]) -> list[tuple[int, float]]:
    """(step, training loss) pairs from ``trainer.state.log_history``, in step order."""
    return sorted((int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e)


def read_scalars(logdir: str | Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """(step, value) pairs of one scalar from the TensorBoard event files under `logdir`.

    ``report_to="tensorboard"`` writes them to ``<output_dir>/runs/<date>_<host>/``; pass
    that folder or any folder above it (every run found below is read, in step order).
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as err:
        raise ImportError(
            "reading TensorBoard logs needs the tensorboard package: pip install -r "
            "requirements.txt (it is pinned there)."
        ) from err
    files = sorted(Path(logdir).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(
            f"no TensorBoard event file under {logdir}: was the run made with "
            "report_to='tensorboard'?"
        )
    points: dict[int, float] = {}
    for folder in sorted({f.parent for f in files}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            points.update({e.step: float(e.value) for e in acc.Scalars(tag)})
    if not points:
        raise KeyError(f"no scalar {tag!r} under {logdir}.")
    return sorted(points.items())
