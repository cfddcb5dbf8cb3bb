"""Where a step's time goes (tools/bench/step_profile.py): the grouping on hand-made
operator trees, and one profiled step of the tiny model, rendered into results.md."""

from __future__ import annotations

import json

import pytest

from tools.bench import run as bench_run
from tools.bench import step_profile
from tools.bench.step_profile import GROUPS, Op

VOCAB, RANK = 49_152, 16


def _chain(*names_and_shapes, seconds=1.0):
    """A line of operators, outermost first; the innermost carries `seconds` of self time."""
    parent = None
    for name, shapes in names_and_shapes:
        parent = Op(name, 0.0, shapes, parent)
    parent.self_seconds = seconds
    return parent


def test_matmuls_are_told_apart_by_their_shapes_and_by_the_pass_they_ran_in():
    base_forward = _chain(
        ("aten::linear", [[8, 50, 576], [576, 576]]), ("aten::mm", [[400, 576], [576, 576]])
    )
    base_backward = _chain(
        ("autograd::engine::evaluate_function: MmBackward0", []),
        ("aten::mm", [[400, 576], [576, 1536]]),
    )
    lora = _chain(("aten::mm", [[400, 576], [576, RANK]]))
    head = _chain(("aten::mm", [[120, 576], [576, VOCAB]]))
    groups = [
        step_profile.group_of(op, VOCAB, RANK) for op in (base_forward, base_backward, lora, head)
    ]
    assert groups == [GROUPS[0], GROUPS[1], GROUPS[2], "loss head (output layer, cross-entropy)"]


def test_an_operator_takes_the_group_of_the_nearest_operator_that_names_one():
    # a cast inside a linear is a cast; an element-wise op inside the optimizer is the optimizer
    cast = _chain(("aten::linear", [[8, 576], [576, 576]]), ("aten::to", [[576, 576]]))
    adam = _chain(("Optimizer.step#AdamW.step", []), ("aten::_foreach_mul_", []))
    norm = _chain(("aten::rsqrt", [[8, 50, 1]]))
    loss_backward = _chain(
        ("autograd::engine::evaluate_function: LogSoftmaxBackward0", []),
        ("aten::_log_softmax_backward_data", []),
    )
    attention = _chain(("aten::_scaled_dot_product_flash_attention_for_cpu", []))
    dequant = _chain(("bitsandbytes::dequantize_4bit", []))
    python = _chain(("autograd::engine::evaluate_function: AddBackward0", []), seconds=1.0)
    got = [
        step_profile.group_of(op, VOCAB, RANK)
        for op in (cast, adam, norm, loss_backward, attention, dequant, python)
    ]
    assert got == [
        "dtype casts",
        "optimizer",
        "element-wise ops and norms",
        "loss head (output layer, cross-entropy)",
        "attention",
        "4-bit de-quantization",
        "framework (Python, autograd bookkeeping)",
    ]


def test_self_times_add_up_and_the_rest_of_the_wall_time_is_outside_any_operator():
    outer = Op("aten::linear", 0.5, [[4, 576], [576, 576]])
    inner = Op("aten::mm", 2.0, [[4, 576], [576, 576]], outer)
    seconds = step_profile.grouped_seconds([outer, inner], 4.0, VOCAB, RANK)
    assert seconds[GROUPS[0]] == 2.5
    assert seconds["outside any operator"] == 1.5
    assert sum(seconds.values()) == pytest.approx(4.0)
    assert list(seconds) == list(GROUPS)


@pytest.mark.filterwarnings("ignore")
def test_one_profiled_step_of_the_tiny_model_fills_every_share(tmp_path):
    result = step_profile.run("tiny-random-smollm2", tmp_path, at=2)
    saved = json.loads((tmp_path / "profile.json").read_text())
    assert set(saved["recipes"]) == {"course", "chapter00"}
    for recipe in saved["recipes"].values():
        shares = recipe["shares"]
        assert list(shares) == list(GROUPS)
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.02)
        # a LoRA step multiplies base weights in both passes and runs AdamW
        assert shares[GROUPS[0]] > 0 and shares[GROUPS[1]] > 0 and shares[GROUPS[2]] > 0
        assert shares["optimizer"] > 0 and recipe["collation_seconds"] > 0
    assert result["recipes"]["chapter00"]["batch_size"] == 4
    assert result["recipes"]["chapter00"]["shares"]["4-bit de-quantization"] >= 0


def test_the_profile_table_is_rendered_with_its_own_date():
    from tools.bench import report

    shares = dict.fromkeys(GROUPS, 0.0) | {GROUPS[0]: 0.25, "optimizer": 0.75}
    recipe = {
        "description": "d",
        "bf16": False,
        "wall_seconds": 2.0,
        "collation_seconds": 0.001,
        "shares": shares,
    }
    meta = {
        "date": "2026-12-08 01:00 UTC",
        "cpu": "AMD EPYC",
        "cores": 2,
        "cpu_capability": "AVX512",
        "bf16_native": True,
        "torch": "2.13.0",
        "threads": 2,
    }
    text = "\n".join(report.profile_section({"meta": meta, "recipes": {"course": recipe}}))
    assert "Profiled on 2026-12-08 01:00 UTC: AMD EPYC" in text
    assert f"| {GROUPS[0]} | 25% |" in text and "| optimizer | 75% |" in text
    assert "| step (s), profiled | 2.00 |" in text
    assert bench_run.read_profile("/nonexistent") is None
