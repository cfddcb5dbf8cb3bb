"""Answers to chapter 11's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

from helpers.exercises import ch11
from helpers.litgpt import litgpt_record, lora_parameter_count


def _by_hand(row):
    messages = row["prompt"] + row["completion"]
    system = [m["content"] for m in messages if m["role"] == "system"]
    record = {
        "instruction": next(m["content"] for m in messages if m["role"] == "user"),
        "output": row["completion"][-1]["content"],
    }
    if system:
        record["sys_prompt"] = system[0]
    return record


def _no_system(row):
    record = litgpt_record(row)
    record.pop("sys_prompt", None)
    return record


def _swapped(row):
    record = litgpt_record(row)
    record["instruction"], record["output"] = record["output"], record["instruction"]
    return record


def _alpaca_keys(row):
    record = litgpt_record(row)
    return {"input": record["instruction"], "response": record["output"]}


def _always_system(row):
    record = litgpt_record(row)
    record.setdefault("sys_prompt", "Translate into Yoda-speak.")
    return record


RIGHT = {
    "11.1": [litgpt_record, _by_hand],
    "11.2": [460_800, 460800.0],
}

WRONG = {
    "11.1": [
        (_no_system, "sys_prompt"),
        (_swapped, "the instruction is the English sentence"),
        (_alpaca_keys, "'instruction' and 'output'"),
        (_always_system, "no 'sys_prompt' key"),
        ("instruction", "asks for a function"),
    ],
    "11.2": [
        (4_884_480 // 2, "every linear layer"),
        (552_960, "192 outputs"),
        (15_360, "one layer"),
        (1000, "per layer r x"),
    ],
}


# --- 11.3: LitGPT's LoRA parameters -----------------------------------------------------------
def qv_by_hand(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    query = r * n_embd + r * n_head * head_size
    value = r * n_embd + r * n_query_groups * head_size
    return n_layer * (query + value)


def qv_value_as_wide_as_query(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    return n_layer * 2 * r * (2 * n_embd)


def qv_one_layer(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    return qv_by_hand(1, n_embd, head_size, n_head, n_query_groups, r)


def qkv(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    kv = n_query_groups * head_size
    return n_layer * r * (3 * n_embd + n_head * head_size + 2 * kv)


def qv_with_the_helper(n_layer, n_embd, head_size, n_head, n_query_groups, r):
    return lora_parameter_count(
        n_layer, n_embd, head_size, n_head, n_query_groups, 0, r,
        key=False, projection=False, mlp=False,
    )  # fmt: skip


RIGHT["11.3"] = [qv_by_hand, ch11.query_value_lora_parameters]
WRONG["11.3"] = [
    (qv_value_as_wide_as_query, "n_query_groups * head_size"),
    (qv_one_layer, "that is one layer"),
    (qkv, "key is not adapted"),
    (qv_with_the_helper, "write it yourself"),
]


def test_the_litgpt_reference_equals_the_chapter_helper():
    for config in ch11.LITGPT_CONFIGS:
        expected = lora_parameter_count(
            *config[:5], 0, config[5], key=False, projection=False, mlp=False
        )
        assert ch11.query_value_lora_parameters(*config) == expected
