"""Exercises of chapter 06, causal-LM training with Trainer."""

from __future__ import annotations

import random

from ..causal_lm import group_texts
from . import AnswerMissing, call_answer, near_value, number, refuse_course_solution, register

# ---------------------------------------------------------------- 06.1
BLOCK_SIZES = (4, 7, 16)
"""Exercise 06.1: the block sizes the check cuts its (unseen) data into."""


def _unseen_examples(seed: int) -> dict[str, list[list[int]]]:
    """Token lists of random lengths and ids, different from anything in the chapter."""
    rng = random.Random(seed)
    ids = [[rng.randrange(1, 50_000) for _ in range(rng.randrange(1, 30))] for _ in range(9)]
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}


CASES = [
    (_unseen_examples(seed), size) for seed, size in zip((61, 62, 63), BLOCK_SIZES, strict=True)
]


def _as_lists(blocks) -> dict[str, list[list[int]]]:
    if not isinstance(blocks, dict):
        raise TypeError(f"return a dict of columns, got {type(blocks).__name__}")
    return {k: [list(map(int, row)) for row in v] for k, v in blocks.items()}


def _same_blocks(answer, expected) -> bool:
    refuse_course_solution(answer, group_texts, registered=group_texts)
    for examples, size in CASES:
        copy = {k: [list(row) for row in v] for k, v in examples.items()}
        got = _as_lists(call_answer(answer, copy, size))
        if got != group_texts(examples, size):
            return False
    return True


def _blocks_hint(answer, expected):
    examples, size = CASES[0]
    got = _as_lists(
        call_answer(answer, {k: [list(r) for r in v] for k, v in examples.items()}, size)
    )
    want = group_texts(examples, size)
    if "labels" not in got:
        return "add a 'labels' column: a copy of the input_ids blocks"
    if set(got) != set(want):
        return f"return the columns {sorted(want)}, got {sorted(got)}"
    lengths = {len(row) for col in got.values() for row in col}
    if lengths != {size}:
        return (
            f"blocks of lengths {sorted(lengths)}: every block must hold exactly block_size "
            "tokens (drop the remainder that does not fill one)"
        )
    flat = [t for row in got["input_ids"] for t in row]
    joined = [t for row in examples["input_ids"] for t in row]
    if flat != joined[: len(flat)]:
        return "concatenate the rows in their order, then cut: the tokens are out of order"
    return None


register(
    "06.1",
    "Write answer_06_1(examples, block_size): concatenate each column of `examples` (a dict "
    "of lists of token lists), cut it into blocks of block_size tokens, drop the remainder "
    "and add a 'labels' column that copies the input_ids blocks.",
    lambda: group_texts,
    _same_blocks,
    hints=[_blocks_hint],
    fallback_hint="compare your blocks with helpers.causal_lm.group_texts on a small example",
)

# ---------------------------------------------------------------- 06.2
LENGTHS, PADDED_TO = (3, 5, 8), 8
"""Exercise 06.2: three texts of these token lengths, padded to PADDED_TO, labels = input_ids."""


def _padding_share() -> float:
    scored = len(LENGTHS) * PADDED_TO
    return sum(PADDED_TO - n for n in LENGTHS) / scored


register(
    "06.2",
    f"Texts of {', '.join(map(str, LENGTHS))} tokens are padded to {PADDED_TO} and labels = "
    "input_ids (the classic recipe). What share of the positions that carry loss are padding "
    "(a number between 0 and 1)?",
    _padding_share,
    number(abs_tol=0.005),
    hints=[
        near_value(
            sum(PADDED_TO - n for n in LENGTHS) / sum(LENGTHS),
            "that is padding per real token; divide by all the positions that carry loss",
        ),
        near_value(0.0, "with labels = input_ids the pad positions keep a label, so they count"),
    ],
    fallback_hint="count pad positions (8 - length per text) over all 3 x 8 positions",
)


# ---------------------------------------------------------------- 06.3
STOP_BELOW = (1.5, 0.8)
"""Exercise 06.3: the thresholds the check gives the learner's callback."""

LOSS_LOGS = (
    {"loss": 2.7, "learning_rate": 1e-4},
    {"eval_loss": 0.5},  # an evaluation log: a validation loss, not the training loss
    {"loss": 1.9, "learning_rate": 9e-5},
    {"loss": 1.5, "learning_rate": 8e-5},
    {"loss": 1.2, "learning_rate": 7e-5},
    {"loss": 0.7, "learning_rate": 6e-5},
)
"""Exercise 06.3: the logs the check feeds the callback, one per step (not a real run)."""


def stop_below_loss(threshold):
    """The reference for 06.3: a callback that stops at the first training loss < threshold."""
    from transformers import TrainerCallback

    class StopBelow(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and logs["loss"] < threshold:
                control.should_training_stop = True

    return StopBelow()


def _stop_steps(answer) -> list[int | None]:
    """For each threshold: the 1-based log at which the callback stopped training (or None)."""
    from types import SimpleNamespace

    from transformers import TrainerCallback, TrainerControl, TrainerState

    refuse_course_solution(answer, registered=stop_below_loss)
    stops = []
    for threshold in STOP_BELOW:
        callback = call_answer(answer, threshold)
        if isinstance(callback, type):
            raise AnswerMissing("return an instance of your callback class (add the ())")
        if not isinstance(callback, TrainerCallback):
            raise AnswerMissing(
                f"return a transformers TrainerCallback, not a {type(callback).__name__}"
            )
        args, state, control = SimpleNamespace(), TrainerState(), TrainerControl()
        stopped = None
        for step, logs in enumerate(LOSS_LOGS, start=1):
            state.global_step = step
            state.log_history.append({**logs, "step": step})
            callback.on_step_end(args, state, control)
            callback.on_log(args, state, control, logs=dict(logs))
            if control.should_training_stop:
                stopped = step
                break
        stops.append(stopped)
    return stops


def _first_below(threshold, key="loss") -> int | None:
    for step, logs in enumerate(LOSS_LOGS, start=1):
        if key in logs and logs[key] < threshold:
            return step
    return None


def _same_stops(answer, expected) -> bool:
    return _stop_steps(answer) == [_first_below(t) for t in STOP_BELOW]


def _stop_hint(answer, expected):
    for got, threshold in zip(_stop_steps(answer), STOP_BELOW, strict=True):
        want = _first_below(threshold)
        if got == want:
            continue
        if got is None:
            return (
                "training never stopped: set control.should_training_stop = True in on_log "
                "when logs['loss'] is below the threshold"
            )
        if got == _first_below(threshold, "eval_loss"):
            return "an evaluation log's eval_loss stopped it: watch the training 'loss' only"
        if got == want + 1 or (want and got > want):
            return "it stopped late: stop at the first loss below the threshold"
        if got is not None and want is not None and got < want:
            if any(logs.get("loss") == threshold for logs in LOSS_LOGS[:got]):
                return "a loss equal to the threshold is not below it: use <, not <="
            return "it stopped early: compare the logged training loss with the threshold"
    return None


register(
    "06.3",
    "Write answer_06_3(threshold): a transformers TrainerCallback (an instance) that stops "
    "training at the first logged training loss below threshold.",
    lambda: stop_below_loss,
    _same_stops,
    hints=[_stop_hint],
    fallback_hint="subclass TrainerCallback, override on_log, set control.should_training_stop",
)
