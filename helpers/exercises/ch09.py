"""Exercises of chapter 09, scaling out."""

from __future__ import annotations

import math

from ..memory.sharding import mixed_precision_states, shard_states
from . import call_answer, near_value, number, register

# ---------------------------------------------------------------- 09.1
ZERO_CASES = [
    (n, world, stage)
    for n in (135_000_000, 6_738_415_616, 1_001)
    for world in (1, 3, 8)
    for stage in (0, 1, 2, 3)
]
"""Exercise 09.1: (parameters, ranks, ZeRO stage) the check tries, odd sizes included."""


def zero_bytes(num_parameters: int, world_size: int, stage: int) -> int:
    """GPU bytes per rank of mixed-precision AdamW's model states under ZeRO `stage`."""
    return shard_states(mixed_precision_states(num_parameters), world_size, stage).gpu_total


def _same_bytes(answer, expected) -> bool:
    # a shard may be rounded up or down: allow one byte per part
    return all(abs(int(call_answer(answer, *case)) - zero_bytes(*case)) <= 3 for case in ZERO_CASES)


def _zero_hint(answer, expected):
    n, world = 6_738_415_616, 8
    got = {stage: int(call_answer(answer, n, world, stage)) for stage in (0, 1, 2, 3)}
    if abs(got[0] - 16 * n) > 3:
        return "stage 0 shards nothing: 2 + 2 + 12 = 16 bytes per parameter on every rank"
    if abs(got[1] - (4 * n + math.ceil(12 * n / world))) > 3:
        return "stage 1 splits only the optimizer states (the 12 bytes) across the ranks"
    if abs(got[2] - (2 * n + math.ceil(2 * n / world) + math.ceil(12 * n / world))) > 3:
        return "stage 2 splits the gradients too; the bf16 weights stay whole on every rank"
    if abs(got[3] - 3 * math.ceil(16 * n / world / 3)) > 8:
        return "stage 3 splits all 16 bytes per parameter across the ranks"
    return None


register(
    "09.1",
    "Write answer_09_1(num_parameters, world_size, stage): the bytes of model states one GPU "
    "holds when `world_size` ranks train with mixed-precision AdamW (bf16 weights 2 bytes, "
    "bf16 gradients 2, fp32 master weights + momentum + variance 12) under ZeRO `stage` "
    "(0-3, no offload).",
    lambda: zero_bytes,
    _same_bytes,
    hints=[_zero_hint],
    fallback_hint="try it on 1,001 parameters and 3 ranks: shards are rounded up to whole bytes",
)

# ---------------------------------------------------------------- 09.2
EXAMPLES, PROCESSES, PER_DEVICE, ACCUMULATION = 1200, 4, 3, 2
"""Exercise 09.2: an epoch of EXAMPLES on PROCESSES ranks, PER_DEVICE x ACCUMULATION each."""


register(
    "09.2",
    f"One epoch of {EXAMPLES:,} examples on {PROCESSES} processes, per-device batch "
    f"{PER_DEVICE}, gradient accumulation {ACCUMULATION}: how many optimizer steps?",
    lambda: EXAMPLES // (PROCESSES * PER_DEVICE * ACCUMULATION),
    number(abs_tol=0),
    hints=[
        near_value(
            EXAMPLES / (PER_DEVICE * ACCUMULATION),
            "that is one process's count: every step consumes a batch on each process",
        ),
        near_value(
            EXAMPLES / (PROCESSES * PER_DEVICE),
            "each optimizer step also accumulates several micro-batches per process",
        ),
        near_value(
            EXAMPLES / PER_DEVICE, "the global batch is per-device x processes x accumulation"
        ),
    ],
    fallback_hint="global batch = per-device batch x processes x accumulation; divide the epoch",
)
