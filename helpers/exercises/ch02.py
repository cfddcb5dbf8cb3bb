"""Exercises of chapter 02, quantization."""

from __future__ import annotations

import math

from . import as_number, near_ratio, near_value, number, register

ABSMAX_BLOCK = (0.8, -2.54, 0.3, 1.27)
"""The values of exercise 02.1; the question asks for the int8 code of the first."""

NF4_WEIGHT, NF4_ABSMAX = 0.03, 0.08
"""Exercise 02.2: a weight and the absmax of its block of 64."""


def _absmax_code() -> int:
    import torch

    from .. import quantization

    codes, _ = quantization.absmax_quantize(torch.tensor(ABSMAX_BLOCK), bits=8)
    return int(codes[0])


def _zeropoint_hint(answer, expected):
    import torch

    from .. import quantization

    codes, _, _ = quantization.zeropoint_quantize(torch.tensor(ABSMAX_BLOCK), bits=8)
    if math.isclose(as_number(answer), int(codes[0])):
        return "that is the zero-point code; absmax quantization has no zero point"
    return None


def _nf4_levels() -> list[float]:
    from .. import quantization

    return quantization.nf4_levels().tolist()


def _nf4_level() -> float:
    import torch

    from .. import quantization

    levels = quantization.nf4_levels()
    index = quantization.nearest_level(torch.tensor(NF4_WEIGHT / NF4_ABSMAX), levels)
    return float(levels[index])


def _nf4_hint(answer, expected):
    value = as_number(answer)
    normalized = NF4_WEIGHT / NF4_ABSMAX
    levels = _nf4_levels()
    index = levels.index(min(levels, key=lambda v: abs(v - expected)))
    if math.isclose(value, normalized, abs_tol=1e-3):
        return (
            f"{normalized} is the normalized weight itself: NF4 can only store one of its "
            "16 levels, so which level is nearest to it?"
        )
    if value == index:
        return "that is the level's position in the table; give the level's value"
    if math.isclose(value, expected * NF4_ABSMAX, rel_tol=1e-2):
        return (
            "that is the weight restored after dequantization (level x absmax); give the "
            "level itself, on the [-1, 1] scale"
        )
    if any(math.isclose(value, v, abs_tol=1e-3) for v in levels):
        return "that is an NF4 level, but not the one nearest to the normalized weight"
    if math.isclose(value, NF4_WEIGHT, rel_tol=1e-6):
        return "first divide the weight by its block's absmax"
    return None


def _bytes_per_block() -> float:
    from .. import quantization

    return quantization.bits_per_parameter(bits=4, blocksize=64, scale_bits=32) * 64 / 8


register(
    "02.1",
    f"With absmax int8 quantization of the block {list(ABSMAX_BLOCK)}, which integer code "
    f"stores {ABSMAX_BLOCK[0]}?",
    _absmax_code,
    number(abs_tol=1e-6),
    hints=[
        near_value(
            ABSMAX_BLOCK[0] * 127,
            "the scale is absmax / 127, not 1 / 127: which value has the largest magnitude?",
            rel_tol=1e-3,
        ),
        _zeropoint_hint,
        near_value(
            round(ABSMAX_BLOCK[0] / (1.27 / 127)),
            "the absmax is the largest magnitude, and -2.54 is larger in magnitude than 1.27",
        ),
        near_value(0.02, "that is the scale; give the code, value / scale, rounded"),
        near_value(-127.0, "that is the code of -2.54, the value with the largest magnitude"),
    ],
    fallback_hint="scale = absmax / 127, then code = round(value / scale)",
)

register(
    "02.2",
    f"A weight of {NF4_WEIGHT} sits in a block of 64 whose absmax is {NF4_ABSMAX}. Which NF4 "
    "level (a number in [-1, 1]) stores it?",
    _nf4_level,
    number(abs_tol=5e-4),
    hints=[_nf4_hint],
    fallback_hint=(
        "divide the weight by its block's absmax, then pick the nearest of the 16 NF4 levels "
        "(quantization.nf4_levels())"
    ),
)

register(
    "02.3",
    "How many bytes does one NF4 block take: 64 weights in 4 bits each, plus its absmax "
    "stored as an fp32 number (no double quantization)?",
    _bytes_per_block,
    number(rel_tol=1e-9),
    hints=[
        near_value(32.0, "that is the 64 codes alone: the block also stores its scale"),
        near_value(68.0, "4 bits is half a byte, not a byte"),
        near_value(288.0, "give the answer in bytes, not bits"),
        near_value(260.0, "that is the block in fp32: the weights take 4 bits each"),
        near_value(
            33.0,
            "that is the size with double quantization (an 8-bit scale); here the absmax is fp32",
        ),
        near_value(4.5, "that is bits per weight: multiply by the 64 weights, divide by 8"),
        near_ratio(1 / 64, "that is bytes per weight: a block has 64 of them"),
    ],
    fallback_hint="64 weights x 4 bits, plus 32 bits for the absmax, then divide by 8",
)
