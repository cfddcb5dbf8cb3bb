"""Time to quality: how long the Chapter 00 recipe trains before it translates well enough.

Scoring by generation (what ``evaluate_task`` does, and what the chapter prints) costs
a forward pass per generated token; on a CPU, scoring 100 sentences takes as long as
dozens of training steps. The benchmark checks progress with a cheaper score that can
only be *lower*: **teacher-forced exact match**. One forward pass over prompt + reference
answer gives, at every answer position, the model's most likely next token. If that token
is the reference's at every position of the answer and at its end-of-turn token, greedy
decoding would write exactly the reference and stop there, so the generated answer is an
exact match. (The converse can fail: the model may spell the same text with other tokens.)
Teacher-forced exact match >= 80% therefore means generated exact match >= 80%, which the
benchmark then confirms once with ``evaluate_task``.

Checks cost time too, so they start only once trl's logged training token accuracy (the
share of answer tokens the model already predicts, on the training batches, free) is
high enough for an exact match to be plausible; the time they take is left out of the
training time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from helpers.chat import prompt_completion
from helpers.modes import eval_mode


@dataclass
class Encoded:
    """Prompt + reference answer as token ids, and where the scored answer lies in them."""

    ids: list[int]
    start: int  # first answer token
    end: int  # one past the answer's end-of-turn token


def encode_references(tokenizer, rows) -> list[Encoded]:
    """Each row's chat (prompt + reference completion) as the model is trained on it."""
    eos = tokenizer.eos_token_id
    encoded = []
    for row in rows:
        chat = prompt_completion(tokenizer, row)
        if not chat.prompt_is_prefix:
            raise ValueError("the chat template renders the prompt differently inside the chat")
        full, start = chat.ids, chat.start
        end = full.index(eos, start) + 1 if eos in full[start:] else len(full)
        encoded.append(Encoded(ids=full[:end], start=start, end=end))
    return encoded


def _backbone_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


@torch.no_grad()
def teacher_forced_exact_match(
    model, tokenizer, rows, *, batch_size: int = 25, encoded: list[Encoded] | None = None
) -> list[bool]:
    """For each row: would greedy decoding reproduce the reference answer exactly?

    One forward pass per batch; the LM head is applied only where an answer token is
    predicted. The model's train/eval mode is restored afterwards.
    """
    encoded = encoded if encoded is not None else encode_references(tokenizer, rows)
    backbone, head = _backbone_and_head(model)
    device = head.weight.device
    hits = [False] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))  # less padding
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i].ids) for i in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                seq = encoded[i].ids
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            hidden = backbone(input_ids=ids.to(device), attention_mask=mask.to(device))
            hidden = hidden.last_hidden_state
            for row, i in enumerate(chunk):
                e = encoded[i]
                # position p predicts token p + 1
                logits = head(hidden[row, e.start - 1 : e.end - 1])
                target = torch.tensor(e.ids[e.start : e.end], device=logits.device)
                hits[i] = bool((logits.argmax(-1) == target).all())
    return hits


@dataclass
class QualityCheck:
    step: int
    train_seconds: float  # wall time of training up to this step, checks excluded
    teacher_forced_accuracy: float
    seconds: float  # what the check itself took


@dataclass
class QualityWatcher(TrainerCallback):
    """Checks teacher-forced exact match every `every` steps once training looks ready."""

    tokenizer: object
    rows: object
    clock: object  # the StepClock, paused while checking
    target: float = 0.8
    every: int = 5
    trigger_token_accuracy: float | None = 0.95  # None: check from the start
    checks: list[QualityCheck] = field(default_factory=list)
    token_accuracy: list[tuple[int, float]] = field(default_factory=list)
    reached_step: int | None = None
    deadline: float | None = None  # time.perf_counter() value after which training stops
    stopped_by_deadline: int | None = None  # the step at which it did
    echo: bool = True

    def __post_init__(self):
        self._encoded = encode_references(self.tokenizer, self.rows)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "mean_token_accuracy" in logs:
            self.token_accuracy.append((state.global_step, float(logs["mean_token_accuracy"])))

    def ready(self) -> bool:
        """Checks start once the logged training token accuracy reaches the trigger."""
        if self.trigger_token_accuracy is None:
            return True
        return bool(self.token_accuracy) and (
            self.token_accuracy[-1][1] >= self.trigger_token_accuracy
        )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.stopped_by_deadline = state.global_step
            control.should_training_stop = True
            if self.echo:
                print(f"  stopped at step {state.global_step}: the time budget is spent")
            return control
        if state.global_step % self.every or not self.ready():
            return control
        with self.clock.paused():
            start = time.perf_counter()
            hits = teacher_forced_exact_match(
                model, self.tokenizer, self.rows, encoded=self._encoded
            )
            seconds = time.perf_counter() - start
        accuracy = sum(hits) / len(hits)
        check = QualityCheck(state.global_step, sum(self.clock.wall), accuracy, seconds)
        self.checks.append(check)
        if self.echo:
            print(
                f"  check at step {check.step}: teacher-forced exact match {accuracy:.0%} "
                f"({seconds:.1f} s, not counted)",
                flush=True,
            )
        if accuracy >= self.target:
            self.reached_step = state.global_step
            control.should_training_stop = True
        return control
