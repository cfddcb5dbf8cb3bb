"""Metrics for the course's tasks."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .generation import encoded_batches, generate
from .modes import eval_mode


def normalize(text: str) -> str:
    """Collapse whitespace; nothing else (capitals and punctuation are part of the answer)."""
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    """True when the answer is exactly the reference, up to whitespace."""
    return normalize(prediction) == normalize(reference)


@dataclass
class TaskResult:
    """Exact-match score of a model on a data set, overall and per sentence shape."""

    correct: int
    total: int
    per_shape: dict[str, tuple[int, int]]
    predictions: list[str] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def __str__(self) -> str:
        lines = [f"exact match: {self.correct}/{self.total} = {self.accuracy:.0%}"]
        for shape, (ok, n) in sorted(self.per_shape.items()):
            lines.append(f"  {shape:<12} {ok:>3}/{n:<3}")
        return "\n".join(lines)


def evaluate_task(
    model, tokenizer, dataset, *, limit: int | None = None, batch_size: int = 25
) -> TaskResult:
    """Generate an answer for each prompt and score it by exact match against its reference.

    `dataset` is in prompt-completion format (like ``load_dataset("yoda", "test")``);
    a ``shape`` column, if present, gives the per-shape breakdown.
    """
    rows = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    references = [r["completion"][0]["content"] for r in rows]
    longest = max(len(tokenizer(ref)["input_ids"]) for ref in references)
    predictions = generate(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        max_new_tokens=longest + 8,
        batch_size=batch_size,
    )
    shapes = rows["shape"] if "shape" in rows.column_names else ["all"] * len(rows)
    hits, totals = Counter(), Counter(shapes)
    for shape, pred, ref in zip(shapes, predictions, references, strict=True):
        hits[shape] += exact_match(pred, ref)
    per_shape = {s: (hits[s], totals[s]) for s in totals}
    return TaskResult(sum(hits.values()), len(rows), per_shape, predictions)


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    texts: str | Sequence[str],
    *,
    max_length: int = 256,
    batch_size: int = 4,
) -> float:
    """Perplexity of `model` on `texts`: exp of the mean negative log-likelihood per token.

    Each text is tokenized on its own and cut to its first `max_length` tokens; every token
    after the first is predicted from the ones before it, and the mean is taken over all
    predicted tokens of all texts (a long text weighs more than a short one). Padding never
    counts, so the result does not depend on `batch_size`. Lower is better; a model that
    guessed uniformly among V tokens would score V. The model is put in eval mode and its
    previous mode restored.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings.")
    if max_length < 2 or batch_size < 1:
        raise ValueError("max_length must be at least 2 and batch_size at least 1.")
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    with eval_mode(model, tokenizer, padding_side="right"):
        batches = encoded_batches(
            tokenizer, texts, batch_size, device, truncation=True, max_length=max_length
        )
        for enc in batches:
            logits = model(**enc).logits[:, :-1].float()
            targets = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
            total_nll += torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum"
            ).item()
            total_tokens += int((targets != -100).sum())
    if total_tokens == 0:
        raise ValueError("no token to predict: every text is shorter than 2 tokens.")
    return math.exp(total_nll / total_tokens)
