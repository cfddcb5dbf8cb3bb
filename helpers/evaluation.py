"""Metrics for the course's tasks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .generation import generate


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
