"""Bytes per rank when N data-parallel ranks shard the model states (ZeRO stages 0-3).

Built on chapter 05's estimator: ``zero_memory`` takes the weights, gradients, optimizer
states and activations that ``estimate_training_memory`` predicts for ONE process, and
divides what a ZeRO stage shards among `world_size` ranks (Rajbhandari et al., "ZeRO:
Memory Optimizations Toward Training Trillion Parameter Models", 2020):

- stage 0 (plain DDP): every rank holds everything;
- stage 1: the optimizer states are split, each rank keeps 1/N (DeepSpeed ZeRO-1);
- stage 2: the gradients too (each rank keeps the gradients of its shard: ZeRO-2);
- stage 3: the weights too (ZeRO-3, and PyTorch's FSDP): a layer's full weights are
  gathered just before it runs and freed after;
- offload: the optimizer's shard (stages 1-3), and with stage 3 the weights' shard,
  live in CPU memory instead (ZeRO-Offload); the GPU keeps the rest.

Activations are never sharded by ZeRO: each rank computes its own micro-batch. A shard
is ``ceil(bytes / N)`` (the last rank's is padded). Not modelled: the one layer that
ZeRO-3 gathers at a time, communication buffers, and the fp32 gradients that
ZeRO-Offload copies to the CPU for its optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .estimate import estimate_training_memory

STATES = ("weights", "gradients", "optimizer_states")
STAGES = (0, 1, 2, 3)
SHARDED_FROM = {"optimizer_states": 1, "gradients": 2, "weights": 3}
"""The first ZeRO stage at which each part of the model states is sharded."""

MIXED_PRECISION_ADAM = {"weights": 2, "gradients": 2, "optimizer_states": 12}
"""Bytes per parameter of mixed-precision AdamW as DeepSpeed trains (the ZeRO paper's
2 + 2 + K, K = 12): bf16 weights and gradients, fp32 master weights, momentum, variance."""


@dataclass(frozen=True)
class RankMemory:
    """What one rank holds, in bytes: on the accelerator (`gpu`) and in CPU memory (`cpu`)."""

    stage: int
    world_size: int
    gpu: dict[str, int]
    cpu: dict[str, int]

    @property
    def gpu_total(self) -> int:
        return sum(self.gpu.values())

    @property
    def cpu_total(self) -> int:
        return sum(self.cpu.values())


def check_zero_settings(
    world_size: int, stage: int, offload_optimizer: bool, offload_params: bool
) -> None:
    """Refuse a ZeRO setting that DeepSpeed would refuse, with the reason (the estimator
    and the config writer share it)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer (the ranks).")
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: ZeRO has stages {STAGES} (0 = plain DDP).")
    if offload_optimizer and stage == 0:
        raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3 (stage 0 shards nothing).")
    if offload_params and stage != 3:
        raise ValueError("offload_params needs ZeRO stage 3: only stage 3 shards the weights.")


def shard_states(
    states: dict[str, int],
    world_size: int,
    stage: int,
    *,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    activations: int = 0,
) -> RankMemory:
    """Split the model states of one process (bytes by part) the way ZeRO `stage` does.

    `states` has the keys of ``STATES``; `activations` (one rank's micro-batch) are added
    to the GPU side unchanged.
    """
    check_zero_settings(world_size, stage, offload_optimizer, offload_params)
    if set(states) != set(STATES):
        raise ValueError(f"states needs exactly the keys {STATES}, got {sorted(states)}.")
    gpu, cpu = {}, {}
    for part in STATES:
        held = states[part]
        if stage >= SHARDED_FROM[part]:
            held = math.ceil(held / world_size)
        offloaded = (part == "optimizer_states" and offload_optimizer) or (
            part == "weights" and offload_params
        )
        (cpu if offloaded else gpu)[part] = held
    gpu["activations"] = activations
    return RankMemory(stage, world_size, gpu, cpu)


def model_states(model_or_config: Any, **estimate_kwargs) -> tuple[dict[str, int], int]:
    """(weights, gradients, optimizer states) and activations of ONE process, from chapter 05.

    The states come from the optimizer-step moment of ``estimate_training_memory`` (all
    three alive), the activations from its forward/backward moment.
    """
    estimate = estimate_training_memory(model_or_config, **estimate_kwargs)
    step = estimate.phases["optimizer step"]
    return {part: step[part] for part in STATES}, estimate.phases["forward/backward"]["activations"]


def mixed_precision_states(num_parameters: int) -> dict[str, int]:
    """Model states of mixed-precision AdamW (``MIXED_PRECISION_ADAM``): 16 bytes a parameter."""
    return {part: num_parameters * b for part, b in MIXED_PRECISION_ADAM.items()}


def zero_memory(
    model_or_config: Any,
    world_size: int,
    stage: int,
    *,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    batch_size: int = 1,
    seq_len: int = 128,
    **estimate_kwargs,
) -> RankMemory:
    """Bytes per rank of full fine-tuning under ZeRO `stage` on `world_size` ranks.

    `batch_size` is per rank; other keywords go to ``estimate_training_memory``.
    """
    states, activations = model_states(
        model_or_config, batch_size=batch_size, seq_len=seq_len, **estimate_kwargs
    )
    return shard_states(
        states,
        world_size,
        stage,
        offload_optimizer=offload_optimizer,
        offload_params=offload_params,
        activations=activations,
    )


SETUPS = (
    ("stage 0 (DDP)", 0, False, False),
    ("stage 1", 1, False, False),
    ("stage 2", 2, False, False),
    ("stage 3", 3, False, False),
    ("stage 3 + offload", 3, True, True),
)
"""The columns of ``zero_table``: (label, stage, offload_optimizer, offload_params)."""


def zero_rows(states: dict[str, int], world_sizes=(1, 2, 4, 8), activations: int = 0):
    """GPU bytes per rank for every setup of ``SETUPS`` and world size: {label: [bytes...]}."""
    return {
        label: [
            shard_states(
                states, n, stage, offload_optimizer=oo, offload_params=op, activations=activations
            ).gpu_total
            for n in world_sizes
        ]
        for label, stage, oo, op in SETUPS
    }


def zero_table(states: dict[str, int], world_sizes=(1, 2, 4, 8), activations: int = 0) -> str:
    """``zero_rows`` as a text table, in GB (10**9 bytes)."""
    rows = zero_rows(states, world_sizes, activations)
    head = f"{'GB per rank':<20}" + "".join(f"{f'N={n}':>9}" for n in world_sizes)
    lines = [head]
    for label, values in rows.items():
        lines.append(f"{label:<20}" + "".join(f"{v / 1e9:>9.2f}" for v in values))
    return "\n".join(lines)
