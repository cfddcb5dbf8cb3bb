"""Exercises of chapter 07, evaluation you can trust."""

from __future__ import annotations

from ..metrics import normalized_exact_match
from . import call_answer, near_value, number, register

# ---------------------------------------------------------------- 07.1
UNSEEN_PAIRS = [
    ("Found the map, the captain has.", "found the map the captain has", True),
    ("  Dark,   the cave   is ", "Dark, the cave is.", True),
    ("Go alone, you must not!", "Go alone, you must not.", True),
    ("Sell the horse, did the farmer?", "SELL THE HORSE DID THE FARMER", True),
    ("Go alone, you must.", "Go alone, you must not.", False),
    ("The cave is dark.", "Dark, the cave is.", False),
    ("Reading, the student is.", "Reading a book, the student is.", False),
    ("Help Luke, you will.", "Help Leia, you will.", False),
    ("Found the map the captain has", "Found the map, the captain has!", True),
    ("dark the cave is", "dark the cave was", False),
]
"""Exercise 07.1: (prediction, reference, expected verdict), none of them shown in the chapter."""


def _same_verdicts(answer, expected) -> bool:
    return all(bool(call_answer(answer, pred, ref)) == want for pred, ref, want in UNSEEN_PAIRS)


def _em_hint(answer, expected):
    for pred, ref, want in UNSEEN_PAIRS:
        got = bool(call_answer(answer, pred, ref))
        if got != want:
            if want:
                return (
                    f"{pred!r} vs {ref!r} should match: ignore case, punctuation and extra spaces"
                )
            return f"{pred!r} vs {ref!r} should not match: a different word is a miss"
    return None


register(
    "07.1",
    "Write answer_07_1(prediction, reference) -> bool: True when the two answers are equal "
    "after lower-casing, removing punctuation and collapsing whitespace.",
    lambda: normalized_exact_match,
    _same_verdicts,
    hints=[_em_hint],
    fallback_hint="compare your function with helpers.metrics.normalized_exact_match",
)

# ---------------------------------------------------------------- 07.2
Y_TRUE = ["statements", "statements", "statements", "expressions", "expressions", "data model"]
Y_PRED = ["statements", "statements", "expressions", "expressions", "expressions", "statements"]
"""Exercise 07.2: six true labels and a model's six answers."""


def _f1_per_class() -> dict[str, float]:
    scores = {}
    for label in sorted(set(Y_TRUE) | set(Y_PRED)):
        tp = sum(t == p == label for t, p in zip(Y_TRUE, Y_PRED, strict=True))
        predicted, actual = Y_PRED.count(label), Y_TRUE.count(label)
        scores[label] = 2 * tp / (predicted + actual) if predicted + actual else 0.0
    return scores


def _macro_f1() -> float:
    scores = _f1_per_class()
    return sum(scores.values()) / len(scores)


_ACCURACY = sum(t == p for t, p in zip(Y_TRUE, Y_PRED, strict=True)) / len(Y_TRUE)
_WITHOUT_EMPTY_CLASS = sum(v for v in _f1_per_class().values() if v) / sum(
    1 for v in _f1_per_class().values() if v
)

register(
    "07.2",
    "For the six labels Y_TRUE and answers Y_PRED of helpers.exercises.ch07, what is the "
    "macro-F1 (the unweighted mean of the per-class F1 scores; a number between 0 and 1)?",
    _macro_f1,
    number(abs_tol=0.005),
    hints=[
        near_value(_ACCURACY, "that is the accuracy: macro-F1 averages one F1 per class"),
        near_value(
            _WITHOUT_EMPTY_CLASS,
            "'data model' is a class too: its F1 is 0 and it counts in the mean",
            rel_tol=1e-3,
        ),
    ],
    fallback_hint="per class F1 = 2·TP / (predicted + actual); then the plain mean over classes",
)
