"""helpers.memory.sharding: ZeRO bytes per rank, checked against counts done by hand."""

from __future__ import annotations

import pytest

from helpers.memory import sharding
from helpers.memory.estimate import estimate_training_memory

# 1,000 parameters trained in fp32 with AdamW: 4,000 B weights, 4,000 B gradients,
# 8,000 B optimizer states (two fp32 running averages) in one process.
STATES = {"weights": 4000, "gradients": 4000, "optimizer_states": 8000}


@pytest.mark.parametrize(
    ("stage", "gpu"),
    [
        (0, {"weights": 4000, "gradients": 4000, "optimizer_states": 8000}),  # 16,000
        (1, {"weights": 4000, "gradients": 4000, "optimizer_states": 2000}),  # 10,000
        (2, {"weights": 4000, "gradients": 1000, "optimizer_states": 2000}),  # 7,000
        (3, {"weights": 1000, "gradients": 1000, "optimizer_states": 2000}),  # 4,000
    ],
)
def test_each_stage_on_four_ranks(stage, gpu):
    rank = sharding.shard_states(STATES, 4, stage, activations=500)
    assert rank.gpu == {**gpu, "activations": 500}
    assert rank.gpu_total == sum(gpu.values()) + 500
    assert rank.cpu == {}


def test_offload_moves_the_shards_to_cpu_memory():
    two = sharding.shard_states(STATES, 4, 2, offload_optimizer=True)
    assert (two.gpu_total, two.cpu) == (4000 + 1000, {"optimizer_states": 2000})
    three = sharding.shard_states(STATES, 4, 3, offload_optimizer=True, offload_params=True)
    assert three.gpu == {"gradients": 1000, "activations": 0}
    assert three.cpu == {"weights": 1000, "optimizer_states": 2000}


def test_shards_round_up_and_one_rank_shards_nothing():
    odd = sharding.shard_states({"weights": 10, "gradients": 10, "optimizer_states": 20}, 3, 3)
    assert odd.gpu == {"weights": 4, "gradients": 4, "optimizer_states": 7, "activations": 0}
    for stage in sharding.STAGES:
        assert sharding.shard_states(STATES, 1, stage).gpu_total == 16000


def test_mixed_precision_adam_is_16_bytes_a_parameter_as_in_the_zero_paper():
    states = sharding.mixed_precision_states(7_000_000_000)
    assert states == {"weights": 14e9, "gradients": 14e9, "optimizer_states": 84e9}
    # the paper's figure 1 (Ψ = 7.5B, N = 64 ranks, K = 12), whose GB are rounded
    psi = 7_500_000_000
    paper = {0: 120e9, 1: 31.4e9, 2: 16.6e9, 3: 1.9e9}
    for stage, expected in paper.items():
        got = sharding.shard_states(sharding.mixed_precision_states(psi), 64, stage).gpu_total
        assert got == pytest.approx(expected, rel=0.015)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_size": 0, "stage": 1}, "positive integer"),
        ({"world_size": 2, "stage": 4}, "stages"),
        ({"world_size": 2, "stage": 0, "offload_optimizer": True}, "stage 1, 2 or 3"),
        ({"world_size": 2, "stage": 2, "offload_params": True}, "needs ZeRO stage 3"),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sharding.shard_states(STATES, **kwargs)


def test_zero_memory_shards_chapter_05s_estimate():
    one = estimate_training_memory("smollm2-135m-instruct", batch_size=2, seq_len=64)
    step = one.phases["optimizer step"]
    two = sharding.zero_memory("smollm2-135m-instruct", 2, 2, batch_size=2, seq_len=64)
    assert two.gpu["weights"] == step["weights"]
    assert two.gpu["gradients"] == -(-step["gradients"] // 2)
    assert two.gpu["optimizer_states"] == -(-step["optimizer_states"] // 2)
    assert two.gpu["activations"] == one.phases["forward/backward"]["activations"] > 0


def test_table_has_a_row_per_setup_and_a_column_per_world_size():
    table = sharding.zero_table(STATES, world_sizes=(1, 2))
    lines = table.splitlines()
    assert len(lines) == 1 + len(sharding.SETUPS)
    assert lines[1].split()[-2:] == ["0.00", "0.00"]  # 16,000 B is 0.00 GB
    rows = sharding.zero_rows(STATES, world_sizes=(1, 2))
    assert rows["stage 3"] == [16000, 8000]
    assert rows["stage 3 + offload"] == [4000, 2000]
