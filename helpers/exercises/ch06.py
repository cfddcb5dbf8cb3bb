"""Exercises of chapter 06, causal-LM training with Trainer."""

from __future__ import annotations

import random

from ..causal_lm import group_texts
from . import call_answer, near_value, number, register

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
