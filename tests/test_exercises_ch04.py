"""Answers to chapter 04's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
The numbers typed here were read off SmolLM2's tokenizer; the tests below derive them
again another way (from the SFTTrainer itself and from the collator).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers
from helpers import batches, exercises
from helpers.exercises import ch04

RIGHT = {
    "04.1": [12, 12.0, torch.tensor(12), np.int64(12)],
    "04.2": [
        ["answer", "end of turn"],
        ("end of turn", "answer"),
        {"Answer", " END OF TURN "},
        ["answer", "answer", "end of turn"],
    ],
    "04.3": [82 / 448, 0.183, 0.18, round(82 / 448, 4), torch.tensor(82 / 448)],
}

WRONG = {
    "04.1": [
        (10, "answer's own tokens"),
        (11, "newline"),
        (15, "add_generation_prompt"),
        (43, "whole sequence"),
        (31, "WITHOUT loss"),
        (7, "not words"),
        (20, "labels != -100"),
        ("12", "not a string"),
        ([12], "single number"),
    ],
    "04.2": [
        (["answer"], "so that generation stops"),
        (["user", "answer", "end of turn"], "completion only"),
        (["system", "user", "assistant header", "answer", "end of turn"], "completion only"),
        (["assistant header", "answer", "end of turn"], "add_generation_prompt"),
        (["end of turn"], "labels of the prepared example"),
        ([], "so that generation stops"),
        ("answer", "list of parts"),
        (["answer", "eos"], "not one of the parts"),
    ],
    "04.3": [
        (18.3, "not a percentage"),
        (82 / 366, "padding included"),
        (82, "not a number of tokens"),
        (0.5, "longest length"),
        ("0.18", "not a string"),
    ],
}


def test_solutions_match_the_sft_trainer(tiny, yoda, tmp_path):
    model, tokenizer = tiny
    args = helpers.sft_config(str(tmp_path), max_steps=1, device="cpu")
    test_row = yoda["test"].select([ch04.LOSS_EXAMPLE])
    trainer = helpers.build_trainer(model, tokenizer, test_row, args)
    labels = trainer.train_dataset[0]["labels"]
    assert exercises.solution("04.1") == sum(label != -100 for label in labels) == 12

    train = yoda["train"].select(list(ch04.PAD_ROWS))
    trainer = helpers.build_trainer(model, tokenizer, train, args)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(train))])
    assert exercises.solution("04.3") == pytest.approx(batches.pad_share(batch))
    assert batches.count(batch).padding == 82 and batches.count(batch).total == 448


def test_parts_are_read_from_the_labels(yoda):
    tokenizer = ch04._tokenizer()
    row = yoda["train"][ch04.PARTS_EXAMPLE]
    _, labels = batches.sft_labels(tokenizer, row)
    n_loss = sum(label != -100 for label in labels)
    answer_tokens = len(tokenizer(row["yoda"], add_special_tokens=False)["input_ids"])
    assert n_loss == answer_tokens + 2  # answer, <|im_end|>, newline
    assert exercises.solution("04.2") == ["answer", "end of turn"]
