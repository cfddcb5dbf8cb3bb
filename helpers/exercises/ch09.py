"""Exercises of chapter 09, scaling out."""

from __future__ import annotations

import math

from ..memory.sharding import mixed_precision_states, shard_states
from . import (
    AnswerMissing,
    call_answer,
    names_used,
    near_value,
    number,
    refuse_course_solution,
    register,
)

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


# ---------------------------------------------------------------- 09.3
SHARD_CASES = ((10, 4), (7, 3), (12, 5), (3, 4))
"""Exercise 09.3: (examples, ranks) the check splits; none divides evenly but one."""


def rank_indices(num_examples, world_size, rank):
    """The reference for 09.3: what ``DistributedSampler(shuffle=False)`` gives `rank`.

    The index list is padded by repeating its start until every rank gets the same
    number, and rank r takes every world_size-th index from position r.
    """
    import math

    indices = list(range(num_examples))
    total = math.ceil(num_examples / world_size) * world_size
    while len(indices) < total:
        indices += indices[: total - len(indices)]
    return indices[rank:total:world_size]


def _torch_indices(num_examples, world_size, rank) -> list[int]:
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(num_examples), num_replicas=world_size, rank=rank, shuffle=False
    )
    return list(sampler)


def _shards(answer) -> list[tuple[int, int, int, list[int]]]:
    refuse_course_solution(answer, registered=rank_indices)
    if "DistributedSampler" in names_used(answer):
        raise AnswerMissing("write it yourself: compute the indices, not with DistributedSampler")
    got = []
    for n, world in SHARD_CASES:
        for rank in range(world):
            indices = call_answer(answer, n, world, rank)
            if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
                raise AnswerMissing("return the rank's indices as a list of integers")
            got.append((n, world, rank, [int(i) for i in indices]))
    return got


def _same_shards(answer, expected) -> bool:
    return all(got == _torch_indices(n, w, r) for n, w, r, got in _shards(answer))


def _shard_hint(answer, expected):
    import math

    for n, world, rank, got in _shards(answer):
        want = _torch_indices(n, world, rank)
        if got == want:
            continue
        per_rank = math.ceil(n / world)
        if len(got) != per_rank:
            return (
                f"with {n} examples on {world} ranks every rank gets {per_rank} indices: "
                "the sampler pads the list by repeating its first indices"
            )
        if got == list(range(rank * per_rank, (rank + 1) * per_rank)):
            return "the sampler does not cut contiguous chunks: rank r takes r, r + world, ..."
        return None
    return None


register(
    "09.3",
    "Write answer_09_3(num_examples, world_size, rank): the example indices that rank gets "
    "from torch's DistributedSampler without shuffling, written yourself.",
    lambda: rank_indices,
    _same_shards,
    hints=[_shard_hint],
    fallback_hint="pad range(n) to a multiple of world_size from its start, then stride",
)
