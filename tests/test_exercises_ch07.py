"""Answers to chapter 07's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import math
import re
import string

import pytest
from sklearn.metrics import f1_score

from helpers.exercises import ch07
from helpers.exercises.ch07 import Y_PRED, Y_TRUE
from helpers.metrics import normalized_exact_match


def _regex_version(prediction, reference):
    def clean(text):
        return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())

    return clean(prediction) == clean(reference)


def _keeps_case(prediction, reference):
    def clean(text):
        return " ".join(text.translate(str.maketrans("", "", string.punctuation)).split())

    return clean(prediction) == clean(reference)


def _strict(prediction, reference):
    return prediction.strip() == reference.strip()


def _contains(prediction, reference):
    return _regex_version(prediction, reference) or reference.lower()[:10] in prediction.lower()


def _always_true(prediction, reference):
    return True


RIGHT = {
    "07.1": [normalized_exact_match, _regex_version],
    "07.2": [f1_score(Y_TRUE, Y_PRED, average="macro"), 0.489, 22 / 45],
}

WRONG = {
    "07.1": [
        (_keeps_case, "ignore case"),
        (_strict, "ignore case"),
        (_always_true, "should not match"),
        (_contains, "should not match"),
        ("exact match", "asks for a function"),
    ],
    "07.2": [
        (4 / 6, "that is the accuracy"),
        ((2 / 3 + 0.8) / 2, "'data model' is a class too"),
        (0.9, "per class F1"),
        ("0.49", "not a string"),
    ],
}


# --- 07.3: the Wilson interval ----------------------------------------------------------------
def wilson_by_hand(hits, n):
    z = 1.96
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half


def wald(hits, n):
    p = hits / n
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def wilson_swapped(hits, n):
    low, high = wilson_by_hand(hits, n)
    return high, low


def wilson_with_scipy(hits, n):
    from scipy.stats import binomtest

    ci = binomtest(hits, n).proportion_ci(method="wilson")
    return ci.low, ci.high


def wilson_with_rate(hits, n):
    from helpers.metrics import Rate

    return Rate(hits, n).interval


RIGHT["07.3"] = [wilson_by_hand, ch07.wilson_interval]
WRONG["07.3"] = [
    (wald, "normal (Wald) interval"),
    (wilson_swapped, "the smaller bound first"),
    (wilson_with_scipy, "write it yourself"),
    (wilson_with_rate, "write it yourself"),
    (lambda hits, n: hits / n, "as a pair"),
]


def test_the_wilson_reference_matches_scipy():
    from helpers.metrics import Rate

    for hits, n in ch07.INTERVAL_CASES:
        assert ch07.wilson_interval(hits, n) == pytest.approx(Rate(hits, n).interval, abs=1e-9)
