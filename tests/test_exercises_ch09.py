"""Answers to chapter 09's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import math

from helpers.exercises import ch09


def _by_formula(n, world, stage):
    weights, grads, optim = 2 * n, 2 * n, 12 * n
    if stage >= 1:
        optim = math.ceil(optim / world)
    if stage >= 2:
        grads = math.ceil(grads / world)
    if stage >= 3:
        weights = math.ceil(weights / world)
    return weights + grads + optim


def _floored(n, world, stage):
    per = {0: 16 * n, 1: 4 * n + 12 * n // world, 2: 2 * n + 14 * n // world, 3: 16 * n // world}
    return per[stage]


def _stage1_shards_grads(n, world, stage):
    return _by_formula(n, world, 2 if stage == 1 else stage)


def _stage2_shards_only_optimizer(n, world, stage):
    return _by_formula(n, world, 1 if stage == 2 else stage)


def _no_sharding(n, world, stage):
    return 16 * n


RIGHT = {
    "09.1": [_by_formula, _floored],
    "09.2": [50, 50.0],
}

WRONG = {
    "09.1": [
        (_stage1_shards_grads, "stage 1 splits only the optimizer states"),
        (_stage2_shards_only_optimizer, "stage 2 splits the gradients too"),
        (_no_sharding, "stage 1 splits only"),
        (lambda n, world, stage: 12 * n, "stage 0 shards nothing"),
        (42, "asks for a function"),
    ],
    "09.2": [
        (200, "one process's count"),
        (200.0, "one process's count"),
        (100, "accumulates several micro-batches"),
        (400, "the global batch is per-device"),
        (51, "global batch = per-device"),
    ],
}


# --- 09.3: the indices a rank reads -----------------------------------------------------------
def strided_with_padding(num_examples, world_size, rank):
    per_rank = math.ceil(num_examples / world_size)
    padded = [i % num_examples for i in range(per_rank * world_size)]
    return padded[rank::world_size]


def strided_no_padding(num_examples, world_size, rank):
    return list(range(rank, num_examples, world_size))


def contiguous(num_examples, world_size, rank):
    per_rank = math.ceil(num_examples / world_size)
    padded = [i % num_examples for i in range(per_rank * world_size)]
    return padded[rank * per_rank : (rank + 1) * per_rank]


def with_the_sampler(num_examples, world_size, rank):
    from torch.utils.data import DistributedSampler

    return list(DistributedSampler(range(num_examples), world_size, rank, shuffle=False))


RIGHT["09.3"] = [strided_with_padding, ch09.rank_indices]
WRONG["09.3"] = [
    (strided_no_padding, "pads the list"),
    (contiguous, "contiguous chunks"),
    (with_the_sampler, "write it yourself"),
    (lambda n, w, r: "0,1,2", "as a list of integers"),
]
