"""Answers to chapter 05's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import exercises
from helpers.exercises import ch05

LORA_16 = 4_884_480  # r=16 on the 7 linear layers of 30 blocks: 16 x 10,176 x 30

RIGHT = {
    "05.1": [39_075_840, 2 * 4 * LORA_16, 39.08e6, np.int64(39_075_840), torch.tensor(39075840)],
    "05.2": [201_326_592, 8 * 128 * 49152 * 4, 2.013e8, np.float32(201326592)],
    "05.3": ["checkpointing", " Checkpointing ", "CHECKPOINTING"],
}

WRONG = {
    "05.1": [
        (LORA_16, "number of trainable parameters"),
        (4 * LORA_16, "Adam keeps two"),
        (2 * LORA_16, "each fp32 number is 4"),
        (16 * LORA_16, "optimizer states only"),
        (12 * LORA_16, "adds the gradients"),
        (8 * 134_515_008, "only the LoRA adapters train"),
        (8 * 8 * LORA_16, "not bits"),
        (1_000_000, "count the LoRA parameters"),
        ("39075840", "not a string"),
    ],
    "05.2": [
        (100_663_296, "2 bytes per value"),
        (8 * 128 * 576 * 4, "hidden states"),
        (128 * 49152 * 4, "one sequence"),
        (3 * 201_326_592, "three tensors"),
        (8 * 201_326_592, "not bits"),
        (201.3, "not megabytes"),
        (12345, "vocabulary size"),
    ],
    "05.3": [
        ("sgd", "optimizer states are a few tens of MB"),
        ("4bit", "4-bit shrinks the frozen weights"),
        ("half-batch", "halving the batch"),
        ("bf16", "answer with one of"),
        (3, "answer with one of"),
    ],
}


def test_solutions_are_computed():
    assert exercises.solution("05.1") == 2 * 4 * LORA_16
    assert exercises.solution("05.2") == 8 * 128 * 49152 * 4
    savings = ch05.knob_savings()
    assert exercises.solution("05.3") == max(savings, key=savings.get) == "checkpointing"
    assert all(v > 0 for v in savings.values())
