"""Answers to chapter 06's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

from helpers.causal_lm import group_texts


def _loop_version(examples, block_size):
    ids = sum(examples["input_ids"], [])
    mask = sum(examples["attention_mask"], [])
    n = len(ids) // block_size
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(n):
        out["input_ids"].append(ids[i * block_size : (i + 1) * block_size])
        out["attention_mask"].append(mask[i * block_size : (i + 1) * block_size])
        out["labels"].append(ids[i * block_size : (i + 1) * block_size])
    return out


def _keeps_remainder(examples, block_size):
    ids = sum(examples["input_ids"], [])
    mask = sum(examples["attention_mask"], [])
    cut = range(0, len(ids), block_size)
    blocks = [ids[i : i + block_size] for i in cut]
    return {
        "input_ids": blocks,
        "attention_mask": [mask[i : i + block_size] for i in cut],
        "labels": [list(b) for b in blocks],
    }


def _no_labels(examples, block_size):
    out = group_texts(examples, block_size)
    del out["labels"]
    return out


def _reversed_rows(examples, block_size):
    return group_texts({k: v[::-1] for k, v in examples.items()}, block_size)


def _raises(examples, block_size):
    return examples["text"]


RIGHT = {
    "06.1": [group_texts, _loop_version],
    "06.2": [1 / 3, 0.333, 0.3375],
}

WRONG = {
    "06.1": [
        (_keeps_remainder, "drop the remainder"),
        (_no_labels, "add a 'labels' column"),
        (_reversed_rows, "out of order"),
        (_raises, "raised KeyError"),
        (42, "asks for a function"),
    ],
    "06.2": [
        (0.5, "padding per real token"),
        (0, "keep a label"),
        (0.9, "count pad positions"),
    ],
}
