"""Answers to chapter 02's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import exercises

# Right answers a learner might type, in several forms.
RIGHT = {
    "02.1": [40, 40.0, 0.8 / (2.54 / 127), np.int8(40), torch.tensor(40, dtype=torch.int8)],
    "02.2": [0.33791524171829224, 0.3379, 0.338, torch.tensor(0.3379), np.float32(0.33791524)],
    "02.3": [36, 36.0, 64 * 4 / 8 + 4, np.int64(36)],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "02.1": [
        (101.6, "not 1 / 127"),
        (80, "larger in magnitude"),
        (96, "zero-point code"),
        (0.02, "that is the scale"),
        (-127, "code of -2.54"),
        (41, "scale = absmax / 127"),
        ("40", "not a string"),
        ([40], "single number"),
    ],
    "02.2": [
        (0.375, "normalized weight itself"),
        (11, "position in the table"),
        (0.3379 * 0.08, "restored after dequantization"),
        (0.44070982933044434, "not the one nearest"),
        (0.24611230194568634, "not the one nearest"),
        (0.03, "divide the weight"),
        (0.5, "nearest of the 16 NF4 levels"),
        (True, "not True/False"),
    ],
    "02.3": [
        (32, "the 64 codes alone"),
        (68, "half a byte"),
        (288, "bytes, not bits"),
        (260, "in fp32"),
        (33, "double quantization"),
        (4.5, "bits per weight"),
        (36 / 64, "bytes per weight"),
        (40, "64 weights x 4 bits"),
    ],
}


def test_solutions_are_computed_from_first_principles():
    assert exercises.solution("02.1") == 40  # scale 2.54 / 127 = 0.02, 0.8 / 0.02 = 40
    assert abs(exercises.solution("02.2") - 0.33791524) < 1e-6  # 0.03 / 0.08 = 0.375
    assert exercises.solution("02.3") == 36.0  # 64 x 4 bits + 32 bits = 288 bits
