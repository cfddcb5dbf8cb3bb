"""Exercises of chapter 01, hardware and numbers."""

from __future__ import annotations

import math

from . import as_number, near_ratio, near_value, number, register, same_set

ROUND_TRIP_CANDIDATES = (0.1, 0.5, 3.140625, 1000.0, 2049.0, 70000.0, 1e-8)
"""The values offered in exercise 01.3."""


def _smollm2_bytes(dtype_name: str) -> int:
    from .. import numbers

    params = numbers.llama_parameters(numbers.SMOLLM2_135M_CONFIG)
    return numbers.model_memory(params, dtype_name)


def _fp16_max() -> float:
    import torch

    return float(torch.finfo(torch.float16).max)


def _fp16_survivors() -> list[float]:
    import torch

    from .. import numbers

    return [x for x in ROUND_TRIP_CANDIDATES if numbers.round_trip(x, torch.float16) == x]


def _round_trip_hint(answer, expected):
    chosen = {as_number(a) for a in answer}
    expected = set(expected)
    if 70000.0 in chosen:
        return "70000 is above the largest finite fp16 number: it turns into inf"
    if 1e-8 in chosen:
        return "1e-8 is below fp16's smallest subnormal number: it becomes 0"
    if 0.1 in chosen:
        return "0.1 has no finite binary expansion, so fp16 can only store a neighbour of it"
    if 2049.0 in chosen:
        return "above 2048 the gap between fp16 numbers is 2: odd integers are rounded"
    if chosen < expected:
        return "some values you left out survive too: try them with round_trip"
    return None


register(
    "01.1",
    "How many bytes do SmolLM2-135M's 134,515,008 parameters need in bf16?",
    lambda: _smollm2_bytes("bf16"),
    number(rel_tol=0.01),
    hints=[
        near_ratio(2.0, "that is the fp32 size: how many bytes does one bf16 number take?"),
        near_ratio(0.5, "that is 1 byte per parameter (int8): bf16 has 16 bits"),
        near_ratio(0.25, "that is the 4-bit size: bf16 has 16 bits"),
        near_ratio(8.0, "give the answer in bytes, not bits"),
        near_ratio(1e-6, "give the answer in bytes, not megabytes"),
        near_ratio(2**-20, "give the answer in bytes, not MiB"),
        near_ratio(1e-9, "give the answer in bytes, not gigabytes"),
    ],
    fallback_hint="multiply the number of parameters by the bytes one bf16 number takes",
)

register(
    "01.2",
    "What is the largest finite number fp16 can hold?",
    _fp16_max,
    number(rel_tol=0.0, abs_tol=0.0),
    hints=[
        near_value(math.inf, "inf is not finite: which finite number comes just before it?"),
        near_value(3.4028e38, "that is fp32's maximum: fp16 has 5 exponent bits", rel_tol=1e-3),
        near_value(3.3895e38, "that is bf16's maximum: fp16 has 5 exponent bits", rel_tol=1e-3),
        near_value(65535.0, "65535 needs 16 significant bits and fp16 has 11: it is a bit less"),
        near_value(65536.0, "65536 = 2**16 is one exponent too far for fp16: it is a bit less"),
        near_value(32767.0, "that is int16's maximum: fp16 is a floating-point format"),
    ],
    fallback_hint="look at torch.finfo(torch.float16), or the table in this chapter",
)

register(
    "01.3",
    f"Which of {list(ROUND_TRIP_CANDIDATES)} come back unchanged after a trip through fp16?",
    _fp16_survivors,
    same_set,
    hints=[_round_trip_hint],
    fallback_hint="a value survives if fp16 can hold it exactly: check each with round_trip",
)
