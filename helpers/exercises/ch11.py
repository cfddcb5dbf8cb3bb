"""Exercises of chapter 11, the same fine-tune with LitGPT."""

from __future__ import annotations

from ..litgpt import litgpt_record, lora_parameter_count
from . import as_number, call_answer, near_value, number, refuse_course_solution, register

# ---------------------------------------------------------------- 11.1
UNSEEN_ROWS = [
    {
        "prompt": [
            {"role": "system", "content": "Translate into Yoda-speak."},
            {"role": "user", "content": "The old pilot must repair a ship."},
        ],
        "completion": [{"role": "assistant", "content": "Repair a ship, the old pilot must."}],
    },
    {
        "prompt": [
            {"role": "system", "content": "Answer like a Jedi master."},
            {"role": "user", "content": "Is the swamp warm?"},
        ],
        "completion": [{"role": "assistant", "content": "Warm, the swamp is?"}],
    },
    {
        "prompt": [{"role": "user", "content": "We will win the race."}],
        "completion": [{"role": "assistant", "content": "Win the race, we will."}],
    },
]
"""Exercise 11.1: rows the check converts (not from the bundled data; one has no system turn)."""


def _records(answer) -> list:
    return [call_answer(answer, row) for row in UNSEEN_ROWS]


def _same_records(answer, expected) -> bool:
    return _records(answer) == [litgpt_record(row) for row in UNSEEN_ROWS]


def _record_hint(answer, expected):
    got = _records(answer)
    if not all(isinstance(r, dict) for r in got):
        return "return a dict (one JSON record) for each row"
    first, want = got[0], litgpt_record(UNSEEN_ROWS[0])
    if "instruction" not in first or "output" not in first:
        return "LitGPT's JSON data module reads the keys 'instruction' and 'output'"
    if first.get("instruction") == want["output"]:
        return "the instruction is the English sentence (the user turn), the output the Yoda one"
    if first.get("sys_prompt") != want["sys_prompt"]:
        return (
            "put the row's system message under 'sys_prompt' (the smollm2 style would "
            "otherwise use SmolLM's own system prompt)"
        )
    if "sys_prompt" in got[2]:
        return "a row without a system turn gets no 'sys_prompt' key"
    if set(first) != set(want):
        return f"keep exactly the keys {sorted(want)}, got {sorted(first)}"
    return None


register(
    "11.1",
    "Write answer_11_1(row): turn one Yoda row (a dict with 'prompt' and 'completion' chat "
    "messages) into a record of LitGPT's JSON data module: 'instruction' (the user's text), "
    "'output' (the assistant's text) and, when the row has a system message, 'sys_prompt'.",
    lambda: litgpt_record,
    _same_records,
    hints=[_record_hint],
    fallback_hint="compare your records with helpers.litgpt.litgpt_record on a row of the data",
)

# ---------------------------------------------------------------- 11.2
SMOLLM2 = dict(
    n_layer=30, n_embd=576, head_size=64, n_head=9, n_query_groups=3, intermediate_size=1536
)
"""SmolLM2-135M's shapes under LitGPT's names (its model_config.yaml)."""
DEFAULTS = dict(r=8, key=False, projection=False, mlp=False)
"""Exercise 11.2: LitGPT's defaults (lora_r=8; only lora_query and lora_value are on)."""

register(
    "11.2",
    "How many trainable parameters does `litgpt finetune_lora` give SmolLM2-135M with its "
    "defaults: r=8, lora_query and lora_value on, lora_key, lora_projection and lora_mlp "
    "off? (an integer)",
    lambda: lora_parameter_count(**SMOLLM2, **DEFAULTS),
    number(),
    hints=[
        near_value(
            lora_parameter_count(**SMOLLM2, r=8),
            "that is every linear layer (chapter 03's count); the defaults adapt only query "
            "and value",
        ),
        near_value(
            30 * 8 * 2 * (576 + 576),
            "the value projection has n_query_groups x head_size = 192 outputs, not 576 "
            "(grouped-query attention)",
        ),
        near_value(
            8 * (576 + 576) + 8 * (576 + 192),
            "that is one layer; SmolLM2-135M has 30",
        ),
    ],
    fallback_hint="per layer r x (d_in + d_out) for query (576 -> 576) and value (576 -> 192)",
)


# ---------------------------------------------------------------- 11.3
LITGPT_CONFIGS = (
    # (n_layer, n_embd, head_size, n_head, n_query_groups, r): none is SmolLM2-135M
    (32, 960, 64, 15, 5, 8),  # SmolLM2-360M's shape
    (24, 2048, 64, 32, 32, 16),  # SmolLM2-1.7B's shape (no grouped queries)
    (3, 64, 16, 4, 2, 4),  # a toy
)
"""Exercise 11.3: the model shapes and ranks the check counts LitGPT's LoRA parameters for."""


def query_value_lora_parameters(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    """The reference for 11.3: LitGPT's LoRA on query and value only (its defaults)."""
    q_out, kv_out = n_head * head_size, n_query_groups * head_size
    return n_layer * (r * (n_embd + q_out) + r * (n_embd + kv_out))


def _litgpt_counts(answer) -> list[float]:
    refuse_course_solution(answer, lora_parameter_count, registered=query_value_lora_parameters)
    return [as_number(call_answer(answer, *config)) for config in LITGPT_CONFIGS]


def _same_litgpt_counts(answer, expected) -> bool:
    return all(
        got == query_value_lora_parameters(*config)
        for got, config in zip(_litgpt_counts(answer), LITGPT_CONFIGS, strict=True)
    )


def _litgpt_count_hint(answer, expected):
    for got, config in zip(_litgpt_counts(answer), LITGPT_CONFIGS, strict=True):
        n_layer, n_embd, head_size, n_head, groups, r = config
        want = query_value_lora_parameters(*config)
        if got == want:
            continue
        if got == n_layer * 2 * r * (2 * n_embd):
            return "value's output has n_query_groups * head_size features, not n_embd"
        if got == want / n_layer:
            return "that is one layer: every one of the n_layer blocks is adapted"
        if got == n_layer * r * (3 * n_embd + n_head * head_size + 2 * groups * head_size):
            return "key is not adapted by default: lora_query and lora_value only"
        return None
    return None


register(
    "11.3",
    "Write answer_11_3(n_layer, n_embd, head_size, n_head, n_query_groups, r): the trainable "
    "parameters of `litgpt finetune_lora` with its defaults (lora_query and lora_value).",
    lambda: query_value_lora_parameters,
    _same_litgpt_counts,
    hints=[_litgpt_count_hint],
    fallback_hint="r * (d_in + d_out) for the query part and the value part of attn.qkv, per layer",
)
