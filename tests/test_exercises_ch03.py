"""Answers to chapter 03's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import exercises, lora, numbers

# Right answers a learner might type, in several forms.
RIGHT = {
    "03.1": [
        2_442_240,
        2442240.0,
        8 * (2 * 1152 + 2 * 768 + 3 * 2112) * 30,
        torch.tensor(2_442_240),
    ],
    "03.2": [288, 288.0, 576 * 576 / (576 + 576), np.float64(288)],
    "03.3": [39_075_840, 16 * 2_442_240, 39.1e6, torch.tensor(39_075_840)],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "03.1": [
        (81_408, "one block"),
        (4_884_480, "r=16"),
        (106_168_320, "full weight matrices"),
        (1_198_080, "only A"),
        (1_244_160, "only B"),
        (2_626_560, "key/value heads"),
        (921_600, "attention projections only"),
        (2_840_064, "lm_head"),
        (2_400_000, "multiply by 30"),
        ("2442240", "not a string"),
    ],
    "03.2": [
        (576, "twice the matrix"),
        (24, "square root"),
        (8, "break-even"),
        (100, "solve r * (d_in + d_out)"),
        ([288], "single number"),
    ],
    "03.3": [
        (9_768_960, "weights alone"),
        (19_537_920, "two moments per parameter"),
        (29_306_880, "one of the four"),
        (78_151_680, "r=16"),
        (312_606_720, "not bits"),
        (39.07584, "not megabytes"),
        (2_152_240_128, "full fine-tuning"),
        (50_000_000, "multiply exercise 03.1's count"),
    ],
}


def test_solutions_are_computed_from_the_shapes():
    assert exercises.solution("03.1") == 2_442_240
    assert exercises.solution("03.1") == lora.lora_parameters(numbers.SMOLLM2_135M_CONFIG, 8)
    assert exercises.solution("03.2") == 288.0
    assert exercises.solution("03.3") == 16 * 2_442_240


def test_the_count_follows_the_rank_and_the_shapes():
    config = dict(numbers.SMOLLM2_135M_CONFIG)
    assert lora.lora_parameters(config, 16) == 2 * exercises.solution("03.1")
    config["num_hidden_layers"] = 1
    assert lora.lora_parameters(config, 8) == exercises.solution("03.1") // 30
