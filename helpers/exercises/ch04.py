"""Exercises of chapter 04, data and chat templates.

The expected answers are computed from SmolLM2's tokenizer and the bundled Yoda data,
the way trl 1.16's SFTTrainer prepares them (``helpers.batches.sft_labels``, checked
against the trainer in tests/test_batches.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from . import _Missing, as_number, near_ratio, near_value, number, register

LOSS_EXAMPLE = 0
"""Exercise 04.1 counts the loss tokens of this row of the Yoda test split."""

PARTS = ("system", "user", "assistant header", "answer", "end of turn")
"""The parts of a Yoda conversation offered in exercise 04.2."""
PARTS_EXAMPLE = 3
"""Exercise 04.2 looks at this row of the Yoda training split."""

PAD_ROWS = range(8, 16)
"""Exercise 04.3 pads these rows of the Yoda training split into one batch."""


@lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer

    from .. import models

    return AutoTokenizer.from_pretrained(models.prepare_model(models.DEFAULT_MODEL))


@lru_cache(maxsize=2)
def _split(name: str):
    from ..data import load_dataset

    return load_dataset("yoda", name)


def _labels(split: str, index: int) -> tuple[list[int], list[int]]:
    from .. import batches

    return batches.sft_labels(_tokenizer(), _split(split)[index])


# ---------------------------------------------------------------- 04.1
def _loss_tokens() -> int:
    _, labels = _labels("test", LOSS_EXAMPLE)
    return sum(label != -100 for label in labels)


def _answer_tokens() -> int:
    row = _split("test")[LOSS_EXAMPLE]
    return len(_tokenizer()(row["yoda"], add_special_tokens=False)["input_ids"])


def _loss_count_hint(answer, expected):
    value = as_number(answer)
    ids, _ = _labels("test", LOSS_EXAMPLE)
    row = _split("test")[LOSS_EXAMPLE]
    n_answer = _answer_tokens()
    if value == n_answer:
        return (
            "those are the answer's own tokens; look at what the template writes after the "
            "answer: those tokens are part of the completion too"
        )
    if value == n_answer + 1:
        return "one more: after <|im_end|> the template writes a newline, also in the completion"
    if value == expected + 3:
        return "<|im_start|>assistant\\n belongs to the prompt (add_generation_prompt=True)"
    if value == len(ids):
        return "that is the whole sequence: in prompt-completion data the prompt carries no loss"
    if value == len(ids) - expected:
        return "that is the number of tokens WITHOUT loss (the prompt)"
    if value == len(row["yoda"].split()):
        return "count tokens, not words: a word can be one token or several"
    return None


register(
    "04.1",
    f"How many tokens of Yoda test example {LOSS_EXAMPLE} carry loss when SFTTrainer prepares it?",
    _loss_tokens,
    number(),
    hints=[_loss_count_hint],
    fallback_hint="tokenize the example the way SFTTrainer does, and count the labels != -100",
)


# ---------------------------------------------------------------- 04.2
def _part_spans(text: str, row: dict) -> dict[str, tuple[int, int]]:
    system, user = (m["content"] for m in row["prompt"])
    answer = row["completion"][0]["content"]
    header = "<|im_start|>assistant\n"
    spans = {}
    start = text.index(system)
    spans["system"] = (start, start + len(system))
    start = text.index(user, spans["system"][1])
    spans["user"] = (start, start + len(user))
    start = text.index(header, spans["user"][1])
    spans["assistant header"] = (start, start + len(header))
    start = text.index(answer, spans["assistant header"][1])
    spans["answer"] = (start, start + len(answer))
    end_of_turn = "<|im_end|>"
    start = text.index(end_of_turn, spans["answer"][1])
    spans["end of turn"] = (start, start + len(end_of_turn))
    return spans


def _parts_with_loss() -> list[str]:
    tokenizer = _tokenizer()
    row = _split("train")[PARTS_EXAMPLE]
    ids, labels = _labels("train", PARTS_EXAMPLE)
    text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] != ids:
        raise RuntimeError("the chat template renders differently from its tokenization")
    carrying = []
    for part, (start, end) in _part_spans(text, row).items():
        tokens = [
            label
            for (t_start, t_end), label in zip(enc["offset_mapping"], labels, strict=True)
            if t_start < end and t_end > start
        ]
        if any(label != -100 for label in tokens):
            carrying.append(part)
    return carrying


def _as_parts(answer) -> set[str]:
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        raise _Missing(f"give a list of parts, chosen from {list(PARTS)}")
    chosen = set()
    for part in answer:
        name = part.strip().lower() if isinstance(part, str) else part
        if name not in PARTS:
            raise _Missing(f"{part!r} is not one of the parts: choose from {list(PARTS)}")
        chosen.add(name)
    return chosen


def _same_parts(answer, expected) -> bool:
    return _as_parts(answer) == set(expected)


def _parts_hint(answer, expected):
    chosen, expected = _as_parts(answer), set(expected)
    if chosen & {"system", "user"}:
        return (
            "the system and user messages are the prompt: with prompt-completion data "
            "SFTTrainer computes the loss on the completion only"
        )
    if "assistant header" in chosen:
        return (
            "<|im_start|>assistant\\n is written by the template when the prompt is "
            "tokenized with add_generation_prompt=True: it is prompt, not completion"
        )
    if "end of turn" in expected and "end of turn" not in chosen:
        return "what must the model learn to write after its answer, so that generation stops?"
    return None


register(
    "04.2",
    f"Which parts of Yoda training example {PARTS_EXAMPLE} carry loss, out of {list(PARTS)}?",
    _parts_with_loss,
    _same_parts,
    hints=[_parts_hint],
    fallback_hint="look at the labels of the prepared example: which tokens are not -100?",
)


# ---------------------------------------------------------------- 04.3
def _lengths() -> list[int]:
    return [len(_labels("train", i)[0]) for i in PAD_ROWS]


def _pad_share() -> float:
    lengths = _lengths()
    longest = max(lengths)
    return sum(longest - n for n in lengths) / (longest * len(lengths))


def _pads_over_real() -> float:
    lengths = _lengths()
    return sum(max(lengths) - n for n in lengths) / sum(lengths)


def _pad_count() -> int:
    lengths = _lengths()
    return sum(max(lengths) - n for n in lengths)


register(
    "04.3",
    f"Training rows {PAD_ROWS.start} to {PAD_ROWS.stop - 1}, prepared by SFTTrainer and padded "
    "into one batch: what share of its positions is padding (a number between 0 and 1)?",
    _pad_share,
    number(abs_tol=0.005),
    hints=[
        near_ratio(100.0, "give a share between 0 and 1, not a percentage", rel_tol=0.02),
        lambda a, e: (
            "divide by all positions of the batch, padding included"
            if abs(as_number(a) - _pads_over_real()) < 0.005
            else None
        ),
        lambda a, e: near_value(_pad_count(), "a share, not a number of tokens")(a, e),
    ],
    fallback_hint="padding = (longest length - each length), summed; divide by rows x longest",
)
