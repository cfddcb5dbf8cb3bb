"""Exercises of chapter 07, evaluation you can trust."""

from __future__ import annotations

from ..metrics import Rate, normalized_exact_match
from . import (
    AnswerMissing,
    as_number,
    call_answer,
    names_used,
    near_value,
    number,
    refuse_course_solution,
    register,
)

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


# ---------------------------------------------------------------- 07.3
INTERVAL_CASES = ((47, 60), (3, 22), (0, 15), (30, 30), (512, 1000))
"""Exercise 07.3: (hits, n) the check asks intervals for, the edges 0 and n included."""

Z_95 = 1.959963984540054
"""The standard normal's 97.5% quantile: a two-sided 95% interval."""


def wilson_interval(hits, n):
    """The reference for 07.3: the Wilson score 95% interval of hits / n, as (low, high)."""
    import math

    p, z2 = hits / n, Z_95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _intervals(answer) -> list[tuple[float, float]]:
    refuse_course_solution(answer, Rate, registered=wilson_interval)
    if names_used(answer) & {"binomtest", "proportion_ci", "proportion_confint"}:
        raise AnswerMissing("write it yourself: compute the Wilson formula, not scipy/statsmodels")
    got = []
    for case in INTERVAL_CASES:
        pair = call_answer(answer, *case)
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise AnswerMissing("return the interval as a pair (low, high)")
        got.append((as_number(pair[0]), as_number(pair[1])))
    return got


def _same_intervals(answer, expected) -> bool:
    import math

    return all(
        math.isclose(lo, want_lo, abs_tol=1e-3) and math.isclose(hi, want_hi, abs_tol=1e-3)
        for (lo, hi), (want_lo, want_hi) in zip(
            _intervals(answer), (wilson_interval(*c) for c in INTERVAL_CASES), strict=True
        )
    )


def _interval_hint(answer, expected):
    import math

    for (lo, hi), (hits, n) in zip(_intervals(answer), INTERVAL_CASES, strict=True):
        want_lo, want_hi = wilson_interval(hits, n)
        if math.isclose(lo, want_lo, abs_tol=1e-3) and math.isclose(hi, want_hi, abs_tol=1e-3):
            continue
        if lo > hi:
            return "return (low, high), the smaller bound first"
        p = hits / n
        wald = Z_95 * math.sqrt(p * (1 - p) / n)
        if math.isclose(lo, p - wald, abs_tol=1e-3) or math.isclose(hi, p + wald, abs_tol=1e-3):
            return (
                "that is the normal (Wald) interval p ± z·sqrt(p(1-p)/n), which has no width "
                "at 0/n and n/n; the Wilson interval is centred on (p + z²/2n)/(1 + z²/n)"
            )
        if hits in (0, n):
            return f"at {hits}/{n} the interval still has a width: check the edges 0 and n"
        return None
    return None


register(
    "07.3",
    "Write answer_07_3(hits, n): the Wilson score 95% interval of the rate hits / n, as "
    "(low, high), from its formula (not helpers.metrics.Rate or scipy).",
    lambda: wilson_interval,
    _same_intervals,
    hints=[_interval_hint],
    fallback_hint=(
        "centre (p + z²/2n) / (1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)"
    ),
)
