"""Answers to chapter 04's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
The numbers typed here were read off SmolLM2's tokenizer; the tests below derive them
again another way (from the SFTTrainer itself and from the collator).
"""

from __future__ import annotations

import numpy as np
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
    "04.3": [
        ch04.reference_loss_mask,
        lambda tokenizer, example: batches.sft_labels(tokenizer, example)[1],
        lambda tokenizer, example: torch.tensor(ch04.reference_loss_mask(tokenizer, example)),
    ],
}


def _conversation(tokenizer, example):
    return tokenizer.apply_chat_template(
        example["prompt"] + example["completion"], tokenize=True, return_dict=True
    )["input_ids"]


def _prompt(tokenizer, example, generation_prompt=True):
    return tokenizer.apply_chat_template(
        example["prompt"], tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )["input_ids"]


def _header_with_loss(tokenizer, example):
    n = len(_prompt(tokenizer, example, generation_prompt=False))
    return [-100] * n + _conversation(tokenizer, example)[n:]


def _end_of_turn_without_loss(tokenizer, example):
    labels = ch04.reference_loss_mask(tokenizer, example)
    return labels[:-2] + [-100, -100]


def _completion_only(tokenizer, example):
    return ch04.reference_loss_mask(tokenizer, example)[len(_prompt(tokenizer, example)) :]


def _ones_instead_of_ids(tokenizer, example):
    return [-100 if x == -100 else 1 for x in ch04.reference_loss_mask(tokenizer, example)]


def _raises(tokenizer, example):
    raise KeyError("messages")


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
        (_conversation, "every token carries loss"),
        (lambda tokenizer, example: [-100] * len(_conversation(tokenizer, example)), "no token"),
        (_header_with_loss, "belongs to the prompt"),
        (_end_of_turn_without_loss, "too few tokens carry loss"),
        (_completion_only, "one label per token"),
        (_ones_instead_of_ids, "the wrong values"),
        (lambda tokenizer, example: "labels", "list of integers"),
        (_raises, "your answer raised KeyError"),
        ([-100, 1, 2], "asks for a function"),
    ],
}


def test_solution_04_1_matches_the_sft_trainer(tiny, yoda, tmp_path):
    model, tokenizer = tiny
    args = helpers.sft_config(str(tmp_path), max_steps=1, device="cpu")
    test_row = yoda["test"].select([ch04.LOSS_EXAMPLE])
    trainer = helpers.build_trainer(model, tokenizer, test_row, args)
    labels = trainer.train_dataset[0]["labels"]
    assert exercises.solution("04.1") == sum(label != -100 for label in labels) == 12


def test_04_3_is_checked_on_unseen_examples_against_trl():
    """trl's labels (the check's oracle) put loss on the answer, <|im_end|> and a newline."""
    tokenizer = ch04._tokenizer()
    examples = ch04._mask_examples()
    assert all(i not in ch04.MASK_ROWS for i in (ch04.LOSS_EXAMPLE,))  # not the worked example
    assert len(ch04.trl_labels()) == len(examples) == len(ch04.MASK_ROWS) + 1
    for example, labels in zip(examples, ch04.trl_labels(), strict=True):
        answer = example["completion"][0]["content"]
        n_answer = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        assert sum(label != -100 for label in labels) == n_answer + 2
        assert len(labels) == len(_conversation(tokenizer, example))


def test_04_3_unanswered_function_is_not_answered_yet():
    def answer_04_3(tokenizer, example):
        """The labels of one example."""
        ...

    correct, line = exercises.verdict("04.3", answer_04_3)
    assert not correct
    assert line.startswith("Exercise 04.3: not answered yet: write the body")


def test_parts_are_read_from_the_labels(yoda):
    tokenizer = ch04._tokenizer()
    row = yoda["train"][ch04.PARTS_EXAMPLE]
    _, labels = batches.sft_labels(tokenizer, row)
    n_loss = sum(label != -100 for label in labels)
    answer_tokens = len(tokenizer(row["yoda"], add_special_tokens=False)["input_ids"])
    assert n_loss == answer_tokens + 2  # answer, <|im_end|>, newline
    assert exercises.solution("04.2") == ["answer", "end of turn"]


# --- 04.4: ChatML written by hand -------------------------------------------------------------
def chatml_loop(messages, add_generation_prompt):
    text = ""
    if messages[0]["role"] != "system":
        text += (
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
            "Hugging Face<|im_end|>\n"
        )
    for m in messages:
        text += "<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n"
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def chatml_no_default_system(messages, add_generation_prompt):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def chatml_never_generation_prompt(messages, add_generation_prompt):
    return chatml_loop(messages, False)


def chatml_always_generation_prompt(messages, add_generation_prompt):
    return chatml_loop(messages, True)


def chatml_no_newlines(messages, add_generation_prompt):
    return chatml_loop(messages, add_generation_prompt).replace("\n", "")


def chatml_by_the_template(messages, add_generation_prompt):
    from helpers.exercises.ch04 import _tokenizer

    return _tokenizer().apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


RIGHT["04.4"] = [chatml_loop]
WRONG["04.4"] = [
    (chatml_no_default_system, "SmolLM's default one"),
    (chatml_never_generation_prompt, "ends with <|im_start|>assistant"),
    (chatml_always_generation_prompt, "only when add_generation_prompt is True"),
    (chatml_no_newlines, "the wrong newlines"),
    (chatml_by_the_template, "write it yourself"),
    (lambda messages, g: [messages], "as a str"),
]
