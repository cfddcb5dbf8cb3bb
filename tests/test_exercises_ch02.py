"""Answers to chapter 02's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
02.1 asks for a quantizer and 02.4 for a BitsAndBytesConfig: the answers here are those a
learner might write.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import BitsAndBytesConfig

from helpers import exercises, quantization
from helpers.exercises import ch02


# --- 02.1: an absmax int8 quantizer ----------------------------------------------------------
def absmax(x):
    scale = x.abs().max() / 127
    return torch.round(x / scale).to(torch.int8), scale


def absmax_by_multiplying(x):
    factor = 127 / x.abs().max()
    return torch.round(x * factor).to(torch.int8), 1 / factor


def absmax_in_numpy(x):
    values = x.numpy()
    scale = float(np.abs(values).max() / 127)
    return np.round(values / scale).astype(np.int64), scale


def absmax_with_the_helper(x):
    return quantization.absmax_quantize(x, bits=8)


def with_255(x):
    scale = x.abs().max() / 255
    return torch.round(x / scale), scale


def with_128(x):
    scale = x.abs().max() / 128
    return torch.round(x / scale).clamp(-128, 127), scale


def scale_is_absmax(x):
    scale = x.abs().max()
    return torch.round(x / scale * 127), scale


def max_not_absmax(x):
    scale = x.max() / 127
    return torch.round(x / scale).clamp(-127, 127), scale


def no_rounding(x):
    scale = x.abs().max() / 127
    return x / scale, scale


def restored_values(x):
    scale = x.abs().max() / 127
    return torch.round(x / scale) * scale, scale


def codes_only(x):
    return torch.round(x / (x.abs().max() / 127))


def one_scale_per_row(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return torch.round(x / scale), scale


def flattened(x):
    scale = x.abs().max() / 127
    return torch.round(x.flatten() / scale), scale


def wrong_codes(x):
    scale = x.abs().max() / 127
    return torch.round(x / scale) + 2, scale


def unanswered(x):
    """The student copy."""
    ...


def crashing(x):
    return x.absmax()  # no such method


NF4_DQ = BitsAndBytesConfig(
    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
)
NF4_DQ_BF16 = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,
    bnb_4bit_compute_dtype=torch.bfloat16,
)

RIGHT = {
    "02.1": [absmax, absmax_by_multiplying, absmax_in_numpy, absmax_with_the_helper],
    "02.2": [0.33791524171829224, 0.3379, 0.338, torch.tensor(0.3379), np.float32(0.33791524)],
    "02.3": [36, 36.0, 64 * 4 / 8 + 4, np.int64(36)],
    "02.4": [NF4_DQ, NF4_DQ_BF16],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "02.1": [
        (with_255, "not 255"),
        (with_128, "not 128"),
        (scale_is_absmax, "not absmax itself"),
        (max_not_absmax, "largest *magnitude*"),
        (no_rounding, "round x / scale"),
        (restored_values, "restored values"),
        (codes_only, "return two things"),
        (one_scale_per_row, "single number"),
        (flattened, "shape of x"),
        (wrong_codes, "scale = x.abs().max() / 127"),
        (crashing, "raised AttributeError"),
        (40, "asks for a function"),
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
    "02.4": [
        (BitsAndBytesConfig(load_in_8bit=True), "LLM.int8()"),
        (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True), "'fp4'"),
        (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
            "bnb_4bit_use_double_quant=True",
        ),
        (BitsAndBytesConfig(), "load_in_4bit=True"),
        ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "build the config object"),
        ("nf4", "not a str"),
    ],
}


def test_an_unanswered_quantizer_is_not_answered_yet():
    correct, line = exercises.verdict("02.1", unanswered)
    assert not correct
    assert line.startswith("Exercise 02.1: not answered yet: write the body")


def test_the_quantizer_cases_include_a_negative_absmax_and_positive_only_data():
    cases = ch02._quantizer_cases()
    assert any(x.min().abs() > x.max() for x in cases)
    assert any(bool((x > 0).all()) for x in cases)
    assert all(torch.equal(x, y) for x, y in zip(cases, ch02._quantizer_cases(), strict=True))


def test_the_checked_config_loads_a_model_in_4_bits():
    from helpers import models

    course = models.quantization_config("4bit", device="cpu")
    assert exercises.verdict("02.4", course)[0]  # what load_model uses passes the check


def test_solutions_are_computed_from_first_principles():
    assert abs(exercises.solution("02.2") - 0.33791524) < 1e-6  # 0.03 / 0.08 = 0.375
    assert exercises.solution("02.3") == 36.0  # 64 x 4 bits + 32 bits = 288 bits


# --- 02.5: block-wise lookup-table quantization -----------------------------------------------
def blockwise_by_hand(x, levels, blocksize):
    blocks = x.view(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    scaled = blocks / absmax[:, None]
    codes = (scaled[..., None] - levels).abs().argmin(dim=-1)
    return codes.flatten(), absmax


def blockwise_one_scale(x, levels, blocksize):
    absmax = x.abs().max()
    codes = ((x / absmax)[:, None] - levels).abs().argmin(dim=-1)
    return codes, absmax


def blockwise_signed_max(x, levels, blocksize):
    blocks = x.view(-1, blocksize)
    scale = blocks.max(dim=1).values
    codes = ((blocks / scale[:, None])[..., None] - levels).abs().argmin(dim=-1)
    return codes.flatten(), scale


def blockwise_levels_not_indices(x, levels, blocksize):
    codes, absmax = blockwise_by_hand(x, levels, blocksize)
    return levels[codes], absmax


def blockwise_with_the_helper(x, levels, blocksize):
    from helpers.quantization import nearest_level

    blocks = x.view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    return nearest_level(blocks / absmax[:, None], levels).flatten(), absmax


RIGHT["02.5"] = [blockwise_by_hand]
WRONG["02.5"] = [
    (blockwise_one_scale, "each block of blocksize values gets its own"),
    (blockwise_signed_max, "largest absolute value"),
    (blockwise_levels_not_indices, "the index of a level"),
    (blockwise_with_the_helper, "write it yourself"),
    (lambda x, levels, blocksize: x, "a pair (codes, absmax)"),
]
