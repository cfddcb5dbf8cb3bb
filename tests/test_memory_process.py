"""helpers.memory.process: a configuration measured in a fresh process, against the prediction.

The acceptance test (``test_REAL_MODEL_...``) starts one Python process per configuration
with the real SmolLM2-135M and compares its peak RSS with ``estimate.process_memory()``.
"""

from __future__ import annotations

import math

import pytest

from helpers import memory, numbers
from helpers.memory import measure as measure_module

SMOLLM2 = numbers.SMOLLM2_135M_CONFIG


def test_malloc_info_reads_glibc_heap():
    from helpers.memory import process

    info = process.malloc_info()
    if info is None:  # not glibc
        pytest.skip("the C library is not glibc 2.33+")
    assert set(info) == {"in_use", "free", "mmapped"} and info["in_use"] > 0
    kept = [bytearray(1000) for _ in range(1000)]  # heap blocks below the mmap threshold
    assert process.malloc_info()["in_use"] >= info["in_use"] + 900_000
    del kept


def test_plot_process_memory_draws_parts_and_measurement():
    from matplotlib.figure import Figure

    from helpers.memory.process import plot_process_memory

    estimate = memory.estimate_training_memory(SMOLLM2, batch_size=2, seq_len=64, lora_rank=16)
    prediction = estimate.process_memory()
    ax = Figure().add_subplot()
    plot_process_memory({"a": (prediction, 2e9), "b": (prediction, None)}, ax=ax)
    assert len(ax.patches) == 2 * len(prediction.parts)  # stacked parts, two bars
    top = max(p.get_y() + p.get_height() for p in ax.patches)
    assert math.isclose(top, prediction.predicted / 1e6)
    labels = ax.get_legend_handles_labels()[1]
    assert "measured peak RSS" in labels and "runtime (Python, torch, libraries)" in labels


@pytest.mark.real_model  # it loads the model in child processes, which the source scan misses
def test_REAL_MODEL_predicted_rss_within_20_percent_of_fresh_processes():
    """ACCEPTANCE, REAL MODEL (SmolLM2-135M, fp32; about 50 s on one idle core).

    Each configuration runs in a new Python process (helpers.memory.process): import the
    libraries, load "smollm2-135m-instruct", two training steps. Its peak RSS (Linux
    VmHWM, loading included) is within 20% of the estimator's predicted process memory.
    The four differ in batch, sequence length, checkpointing and LoRA vs full.
    """
    from helpers.memory.process import measure_in_fresh_process

    if measure_module.proc_status_bytes("VmHWM") is None:
        pytest.skip("peak RSS needs Linux's /proc/self/status")
    configs = [
        {"batch_size": 2, "seq_len": 64, "lora": 16},
        {"batch_size": 4, "seq_len": 128, "lora": 16, "gradient_checkpointing": True},
        {"batch_size": 2, "seq_len": 64},
        {"batch_size": 1, "seq_len": 128, "gradient_checkpointing": True},
    ]
    for settings in configs:
        measured = measure_in_fresh_process("smollm2-135m-instruct", **settings)
        estimate = memory.estimate_training_memory(
            SMOLLM2,
            dtype="fp32",
            batch_size=settings["batch_size"],
            seq_len=settings["seq_len"],
            lora_rank=settings.get("lora"),
            gradient_checkpointing=settings.get("gradient_checkpointing", False),
        )
        # the live tensors are the estimator's own promise (a few percent)
        assert math.isclose(measured.live_peak, estimate.total, rel_tol=0.05), settings
        predicted = estimate.process_memory("cpu").predicted
        ratio = measured.rss_peak / predicted
        assert 0.8 <= ratio <= 1.2, (settings, predicted, measured)
