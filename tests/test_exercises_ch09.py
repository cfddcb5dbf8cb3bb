"""Answers to chapter 09's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import math


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
