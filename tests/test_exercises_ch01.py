"""Answers to chapter 01's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import exercises

# Right answers a learner might type, in several forms.
RIGHT = {
    "01.1": [269_030_016, 2 * 134_515_008, 270e6, 2.7e8, torch.tensor(269_030_016)],
    "01.2": [65504, 65504.0, torch.finfo(torch.float16).max, np.float16(65504)],
    "01.3": [[0.5, 3.140625, 1000.0], (1000, 0.5, 3.140625), {0.5, 3.140625, 1000.0}],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "01.1": [
        (538_060_032, "fp32 size"),
        (134_515_008, "int8"),
        (269, "not megabytes"),
        (2_152_240_128, "not bits"),
        (250_000_000, "multiply the number of parameters"),
        ("269030016", "not a string"),
        (True, "not True/False"),
    ],
    "01.2": [
        (float("inf"), "inf is not finite"),
        (65535, "16 significant bits"),
        (65536, "one exponent too far"),
        (3.4028234663852886e38, "fp32's maximum"),
        (3.4e38, "fp32's maximum"),
        (3.39e38, "bf16's maximum"),
        (60000, "torch.finfo"),
        ([65504], "single number"),
    ],
    "01.3": [
        ([0.5, 3.140625, 1000.0, 70000.0], "inf"),
        ([0.5, 3.140625, 1000.0, 1e-8], "becomes 0"),
        ([0.1, 0.5, 3.140625, 1000.0], "neighbour"),
        ([0.5, 3.140625, 1000.0, 2049.0], "odd integers"),
        ([0.5], "left out"),
        ([], "left out"),
        (0.5, "list of numbers"),
    ],
}


def test_solutions_are_computed_from_first_principles():
    assert exercises.solution("01.1") == 134_515_008 * 2
    assert exercises.solution("01.2") == 65504.0
    assert exercises.solution("01.3") == [0.5, 3.140625, 1000.0]
