"""Exercises of chapter 03, LoRA."""

from __future__ import annotations

from . import near_ratio, near_value, number, register

RANK = 8
"""The rank asked about in exercises 03.1 and 03.3."""

ADAM_FP32_BYTES = 4 + 4 + 8
"""Per trained parameter: the weight, its gradient and Adam's two moments, all fp32."""


def _config():
    from ..numbers import SMOLLM2_135M_CONFIG

    return SMOLLM2_135M_CONFIG


def _shapes():
    from ..lora import projection_shapes

    return projection_shapes(_config())


def _lora_all_linear(r: int = RANK) -> int:
    """r * (d_in + d_out), summed over the 7 projections of a block, times the 30 blocks."""
    per_block = sum(r * (d_in + d_out) for d_in, d_out in _shapes().values())
    return per_block * _config()["num_hidden_layers"]


def _sum_over_blocks(per_projection) -> int:
    """A wrong count for the hints: `per_projection(d_in, d_out)` summed over every layer."""
    total = sum(per_projection(d_in, d_out) for d_in, d_out in _shapes().values())
    return total * _config()["num_hidden_layers"]


def _q_proj_break_even() -> float:
    """The rank at which A and B of q_proj hold as many numbers as q_proj itself."""
    d_in, d_out = _shapes()["q_proj"]
    return d_in * d_out / (d_in + d_out)


def _lazy(value, hint: str):
    """A hint rule like ``near_value`` whose value is computed only when an answer is checked."""

    def rule(answer, expected):
        return near_value(value(), hint)(answer, expected)

    return rule


def _without_grouped_query_attention() -> int:
    from ..lora import lora_parameters

    config = {**_config(), "num_key_value_heads": _config()["num_attention_heads"]}
    return lora_parameters(config, RANK)


def _attention_only() -> int:
    from ..lora import ATTENTION, lora_parameters

    return lora_parameters(_config(), RANK, ATTENTION)


def _with_lm_head() -> int:
    return _lora_all_linear() + RANK * (_config()["hidden_size"] + _config()["vocab_size"])


_HINTS_03_1 = [
    near_ratio(1 / 30, "that is one block: the model has 30 of them"),
    near_ratio(2.0, "that is r=16: the count grows in proportion to r"),
    _lazy(
        lambda: _sum_over_blocks(lambda d_in, d_out: d_in * d_out),
        "that is the size of the full weight matrices, not of A and B",
    ),
    _lazy(
        lambda: _sum_over_blocks(lambda d_in, d_out: RANK * d_in),
        "that counts only A (r x d_in): B (d_out x r) trains too",
    ),
    _lazy(
        lambda: _sum_over_blocks(lambda d_in, d_out: RANK * d_out),
        "that counts only B (d_out x r): A (r x d_in) trains too",
    ),
    _lazy(
        _without_grouped_query_attention,
        "k_proj and v_proj produce only 3 key/value heads of 64, i.e. 192 numbers, not 576",
    ),
    _lazy(
        _attention_only,
        "that is the attention projections only: all-linear adapts the MLP's three too",
    ),
    _lazy(_with_lm_head, "all-linear leaves out the output layer (lm_head)"),
]


register(
    "03.1",
    "How many trainable parameters does LoRA r=8 on all linear layers add to SmolLM2-135M?",
    _lora_all_linear,
    number(),
    hints=_HINTS_03_1,
    fallback_hint="add r * (d_in + d_out) over the 7 projections of a block, then multiply by 30",
)

register(
    "03.2",
    "At which rank r do A and B of SmolLM2's q_proj (576 x 576) hold as many numbers as q_proj?",
    _q_proj_break_even,
    number(abs_tol=1e-9),
    hints=[
        near_value(576, "at r=576, A and B hold 2 x 576 x 576 numbers: twice the matrix"),
        near_value(24, "that is the square root of 576; solve r * (576 + 576) = 576 * 576"),
        near_value(8, "that is the rank used in this chapter, far below the break-even point"),
    ],
    fallback_hint="solve r * (d_in + d_out) = d_in * d_out for r",
)


def _adam_bytes() -> int:
    return ADAM_FP32_BYTES * _lora_all_linear()


register(
    "03.3",
    "Training the r=8 all-linear adapters with Adam in fp32: how many bytes for their "
    "weights, gradients and Adam's two moments?",
    _adam_bytes,
    number(rel_tol=0.01),
    hints=[
        near_ratio(0.25, "that is the weights alone: gradients and Adam's two moments add more"),
        near_ratio(0.5, "that is weights and gradients: Adam keeps two moments per parameter too"),
        near_ratio(0.75, "one of the four fp32 numbers per parameter is missing"),
        near_ratio(2.0, "that is r=16: exercise 03.1's adapters have r=8"),
        near_ratio(8.0, "give the answer in bytes, not bits"),
        near_ratio(1e-6, "give the answer in bytes, not megabytes"),
        near_value(
            2_152_240_128,
            "that is full fine-tuning: only the adapters get gradients and optimizer states",
            rel_tol=0.01,
        ),
    ],
    fallback_hint="multiply exercise 03.1's count by the bytes each trained parameter needs",
)
