"""Answers to chapter 11's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

from helpers.litgpt import litgpt_record


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
