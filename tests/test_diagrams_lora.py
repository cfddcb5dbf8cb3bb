"""helpers.diagrams.lora and .qlora: figures whose labels carry the right shapes and names."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import lora as course_lora  # noqa: E402
from helpers import numbers  # noqa: E402
from helpers.diagrams import lora, qlora  # noqa: E402
from helpers.diagrams.canvas import texts  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _joined(figure) -> str:
    return "\n".join(texts(figure))


def test_lora_matrices_labels_the_real_q_proj_shapes_and_counts():
    figure = lora.lora_matrices(576, 576, r=8)
    assert isinstance(figure, Figure)
    text = _joined(figure)
    assert "576 x 576" in text and "331,776 parameters" in text
    assert "B\n576 x 8" in text and "A\n8 x 576" in text
    assert "= 9,216" in text and "2.78% of W" in text
    assert "q_proj with LoRA r=8" in text


def test_lora_matrices_follows_a_rectangular_layer_and_refuses_a_rank_too_large():
    text = _joined(lora.lora_matrices(d_in=1536, d_out=576, r=4, name="down_proj"))
    assert "B\n576 x 4" in text and "A\n4 x 1536" in text and "down_proj" in text
    assert f"= {4 * (1536 + 576):,}" in text
    with pytest.raises(ValueError, match="min\\(d_in, d_out\\)=192"):
        lora.lora_matrices(d_in=576, d_out=192, r=193)


def test_decoder_block_colours_the_adapted_layers_and_never_lm_head():
    figure = lora.decoder_block(numbers.SMOLLM2_135M_CONFIG, "all-linear", r=16)
    assert isinstance(figure, Figure)
    text = _joined(figure)
    for name in course_lora.PROJECTIONS:
        assert f"{name}\n" in text
    assert "k_proj\n576 → 192\n+ LoRA r=16" in text
    assert "down_proj\n1536 → 576\n+ LoRA r=16" in text
    assert "lm_head  576 → 49,152\nnot adapted" in text
    assert "decoder block  x 30" in text
    expected = course_lora.lora_parameters(numbers.SMOLLM2_135M_CONFIG, 16)
    assert f"{expected:,} trainable parameters" in text


def test_decoder_block_with_attention_targets_leaves_the_mlp_plain():
    targets = list(course_lora.ATTENTION)
    text = _joined(lora.decoder_block(numbers.SMOLLM2_135M_CONFIG, targets, r=8))
    assert "q_proj\n576 → 576\n+ LoRA r=8" in text
    assert "gate_proj\n576 → 1536" in text and "gate_proj\n576 → 1536\n+ LoRA" not in text
    expected = course_lora.lora_parameters(numbers.SMOLLM2_135M_CONFIG, 8, targets)
    assert f"4 of 7 linear layers per block adapted, {expected:,}" in text
    with pytest.raises(ValueError, match="not linear layers"):
        lora.decoder_block(numbers.SMOLLM2_135M_CONFIG, ["lm_head"])


def test_qlora_flow_names_each_stage_with_the_dtypes_asked_for():
    figure = qlora.qlora_flow(compute_dtype="fp32", adapter_dtype="fp32", r=8)
    assert isinstance(figure, Figure)
    text = _joined(figure)
    assert "stored: NF4 codes\n576 x 576, 4 bits each" in text
    assert f"{576 * 576 // 64:,} block scales in 8 bits" in text
    assert "blocks of 64" in text and "W in fp32" in text
    assert "A  8 x 576\nfp32, trains" in text and "B  576 x 8\nfp32, trains" in text
    plain = _joined(qlora.qlora_flow(double_quant=False))
    assert "block scales in fp32" in plain and "W in bf16" in plain


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def test_the_diagrams_draw_the_same_pixels_twice():
    for draw in (lora.lora_matrices, lora.decoder_block, qlora.qlora_flow):
        assert _png(draw()) == _png(draw())
