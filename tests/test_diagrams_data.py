"""helpers.diagrams.packing and helpers.diagrams.memory: the masks and parts they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import batches, memory  # noqa: E402
from helpers.diagrams import memory as memory_diagram  # noqa: E402
from helpers.diagrams import packing  # noqa: E402


def test_bounds_and_mask_of_a_hand_made_row():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert packing.sequence_bounds(positions) == [(0, 3), (3, 5), (5, 9)]
    mask = packing.packed_attention_mask(positions)
    assert mask.shape == (9, 9)
    expected = torch.zeros(9, 9, dtype=torch.bool)
    for start, end in [(0, 3), (3, 5), (5, 9)]:
        expected[start:end, start:end] = torch.ones(end - start, end - start).tril().bool()
    assert torch.equal(mask, expected)
    assert not mask[3, 2]  # the first token of example 2 cannot see example 1
    assert mask.sum() == 6 + 3 + 10


def test_bounds_agree_with_trl_padding_free_batch(yoda):
    """The sequence starts read off position_ids are trl's own cu_seq_lens."""
    from helpers.exercises.ch04 import _tokenizer

    tok = _tokenizer()
    rows = []
    for i in range(5):
        ids, labels = batches.sft_labels(tok, yoda["train"][i])
        rows.append({"input_ids": ids, "labels": labels})
    flat = batches.trl_collator(tok, padding_free=True)(rows)
    bounds = packing.sequence_bounds(flat["position_ids"][0])
    assert [start for start, _ in bounds] + [bounds[-1][1]] == flat["cu_seq_lens_q"].tolist()
    assert [end - start for start, end in bounds] == [len(r["input_ids"]) for r in rows]
    mask = packing.packed_attention_mask(flat["position_ids"])
    assert mask.sum() == sum(n * (n + 1) // 2 for n in (len(r["input_ids"]) for r in rows))


def test_the_picture_shows_the_mask_and_the_loss():
    positions = [0, 1, 2, 0, 1, 2, 3]
    labels = [-100, 5, 6, -100, -100, 7, 8]
    fig = packing.plot_packed_mask(positions, labels=labels)
    image = fig.axes[0].images[0].get_array()
    mask = packing.packed_attention_mask(positions)
    scored = torch.tensor(labels) != -100
    assert torch.equal(torch.as_tensor(image != 0), mask)
    assert torch.equal(torch.as_tensor(image == 2), mask & scored[None, :])
    assert "2 packed examples, 7 tokens" in fig.axes[0].get_title()
    plt.close(fig)


def test_packing_errors_name_the_fix():
    with pytest.raises(ValueError, match="padding-free batch"):
        packing.sequence_bounds([3, 4, 0, 1])
    with pytest.raises(ValueError, match="empty"):
        packing.sequence_bounds([])
    with pytest.raises(ValueError, match="same packed row"):
        packing.plot_packed_mask([0, 1, 0], labels=[1, 2])


def test_breakdown_splits_the_logits_off_and_adds_up():
    lora = memory.estimate_training_memory(
        "smollm2-135m-instruct", batch_size=8, seq_len=128, lora_rank=16
    )
    assert lora.settings["moment"] == "start of backward"
    parts = memory_diagram.breakdown(lora)
    assert sum(parts.values()) == lora.total
    assert parts["logits"] == lora.details[memory_diagram.LOGITS_DETAIL] > 0
    assert parts["activations"] == lora.activations - parts["logits"]

    full = memory.estimate_training_memory("smollm2-135m-instruct", batch_size=1, seq_len=8)
    assert full.settings["moment"] == "end of backward"
    parts = memory_diagram.breakdown(full)
    assert parts["logits"] == 0 and parts["gradients"] == full.gradients > 0
    assert sum(parts.values()) == full.total


def test_breakdown_plot_stacks_parts_and_marks_the_measurement():
    lora = memory.estimate_training_memory("smollm2-135m-instruct", batch_size=2, seq_len=64)
    rows = {"a": (lora, lora.total * 1.01), "b": (lora, lora.total * 0.5)}
    fig = memory_diagram.plot_breakdown(rows)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == len(memory_diagram.PARTS) * 2
    right_end = max(b.get_x() + b.get_width() for b in bars[:5])
    assert right_end == pytest.approx(lora.total / 1e6)
    marks = [line.get_xdata()[0] for line in ax.lines]
    assert marks == pytest.approx([lora.total * 1.01 / 1e6, lora.total * 0.5 / 1e6])
    plt.close(fig)
    with pytest.raises(ValueError, match="rows is empty"):
        memory_diagram.plot_breakdown({})
