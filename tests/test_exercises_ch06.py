"""Answers to chapter 06's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

from transformers import TrainerCallback

from helpers import exercises
from helpers.causal_lm import group_texts
from helpers.exercises import ch06


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
    out = _loop_version(examples, block_size)
    del out["labels"]
    return out


def _reversed_rows(examples, block_size):
    return _loop_version({k: v[::-1] for k, v in examples.items()}, block_size)


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


# --- 06.3: a callback that stops at a loss ----------------------------------------------------


class StopOnLog(TrainerCallback):
    def __init__(self, threshold):
        self.threshold = threshold

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}) and logs["loss"] < self.threshold:
            control.should_training_stop = True


class StopOnStepEnd(TrainerCallback):
    """Reads the log history at the end of each step instead."""

    def __init__(self, threshold):
        self.threshold = threshold

    def on_step_end(self, args, state, control, **kwargs):
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        if losses and losses[-1] < self.threshold:
            control.should_training_stop = True


class StopOnEvalLoss(StopOnLog):
    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("eval_loss", (logs or {}).get("loss"))
        if loss is not None and loss < self.threshold:
            control.should_training_stop = True


class StopAtOrBelow(StopOnLog):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}) and logs["loss"] <= self.threshold:
            control.should_training_stop = True


class NeverStops(StopOnLog):
    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


RIGHT["06.3"] = [StopOnLog, lambda t: StopOnStepEnd(t), ch06.stop_below_loss]
WRONG["06.3"] = [
    (StopOnEvalLoss, "eval_loss stopped it"),
    (StopAtOrBelow, "use <, not <="),
    (NeverStops, "never stopped"),
    (lambda t: StopOnLog, "add the ()"),
    (lambda t: {"stop_below": t}, "return a transformers TrainerCallback"),
    (lambda t: ch06.stop_below_loss(t), "write it yourself"),
]


def test_06_1_refuses_a_wrapper_of_the_course_function():
    def wrapper(examples, block_size):
        return group_texts(examples, block_size)

    correct, line = exercises.verdict("06.1", wrapper)
    assert not correct and "write it yourself" in line
