"""Answers to chapter 07's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import re
import string

from sklearn.metrics import f1_score

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
