"""Exercises of chapter 04, data and chat templates.

The expected answers are computed from SmolLM2's tokenizer and the bundled Yoda data,
the way trl 1.16's SFTTrainer prepares them (``helpers.batches.sft_labels``, checked
against the trainer in tests/test_batches.py). Exercise 04.3 asks for code: the learner's
loss-mask function is run on examples the chapter never shows, and its labels are compared
with those of a batch built by trl's own SFTTrainer and collator.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from ..data import load_dataset
from . import AnswerMissing, as_number, call_answer, names_used, number, register

LOSS_EXAMPLE = 0
"""Exercise 04.1 counts the loss tokens of this row of the Yoda test split."""

PARTS = ("system", "user", "assistant header", "answer", "end of turn")
"""The parts of a Yoda conversation offered in exercise 04.2."""
PARTS_EXAMPLE = 3
"""Exercise 04.2 looks at this row of the Yoda training split."""

MASK_ROWS = range(100, 104)
"""Exercise 04.3 checks the learner's loss mask on these rows of the Yoda test split, which
the chapter never shows, and on ``MASK_EXTRA``."""
MASK_EXTRA = {
    "prompt": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "What colour is the sky on a clear day?"},
    ],
    "completion": [{"role": "assistant", "content": "Blue."}],
}
"""A conversation unlike the Yoda data: another system message, a one-word answer."""


@lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer

    from .. import models

    return AutoTokenizer.from_pretrained(models.prepare_model(models.DEFAULT_MODEL))


@lru_cache(maxsize=2)
def _split(name: str):
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
        raise AnswerMissing(f"give a list of parts, chosen from {list(PARTS)}")
    chosen = set()
    for part in answer:
        name = part.strip().lower() if isinstance(part, str) else part
        if name not in PARTS:
            raise AnswerMissing(f"{part!r} is not one of the parts: choose from {list(PARTS)}")
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
def _mask_examples() -> list[dict]:
    rows = [dict(_split("test")[i]) for i in MASK_ROWS]
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows] + [MASK_EXTRA]


@lru_cache(maxsize=1)
def trl_labels() -> tuple[tuple[int, ...], ...]:
    """The labels trl's SFTTrainer and its collator give the exercise's examples (no padding).

    A trainer on the tiny model (same tokenizer as SmolLM2) prepares the examples, its
    collator pads them into one batch, and each row is cut back to its real tokens.
    """
    import contextlib
    import io
    import tempfile

    from .. import models, training

    model, tokenizer = models.load_model("tiny-random-smollm2", device="cpu")
    from datasets import Dataset

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        args = training.sft_config(tmp, max_steps=1, device="cpu", disable_tqdm=True)
        trainer = training.build_trainer(
            model, tokenizer, Dataset.from_list(_mask_examples()), args, lm_head="trl"
        )
        prepared = trainer.train_dataset
        batch = trainer.data_collator([prepared[i] for i in range(len(prepared))])
    return tuple(
        tuple(labels[mask.bool()].tolist())
        for labels, mask in zip(batch["labels"], batch["attention_mask"], strict=True)
    )


def reference_loss_mask(tokenizer, example: dict) -> list[int]:
    """The labels of one conversational prompt-completion example: -100 on the prompt."""
    prompt = tokenizer.apply_chat_template(
        example["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full = tokenizer.apply_chat_template(
        example["prompt"] + example["completion"], tokenize=True, return_dict=True
    )["input_ids"]
    return [-100] * len(prompt) + list(full[len(prompt) :])


def _as_labels(result) -> list[int]:
    if hasattr(result, "tolist"):
        result = result.tolist()
    if isinstance(result, (str, bytes, dict)) or not isinstance(result, Iterable):
        raise AnswerMissing(
            f"return the labels as a list of integers (one per token), got {type(result).__name__}"
        )
    labels = list(result)
    if labels and isinstance(labels[0], list) and len(labels) == 1:
        labels = labels[0]  # a batch of one row
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        raise AnswerMissing("return a flat list of integers: token ids, and -100 where no loss")
    return labels


def _learner_labels(function) -> list[list[int]]:
    tokenizer = _tokenizer()
    return [_as_labels(call_answer(function, tokenizer, ex)) for ex in _mask_examples()]


def _same_labels(answer, expected) -> bool:
    return _learner_labels(answer) == [list(row) for row in trl_labels()]


def _mask_hint(answer, expected):
    for got, want in zip(_learner_labels(answer), trl_labels(), strict=True):
        want = list(want)
        if got == want:
            continue
        n_loss = sum(x != -100 for x in got)
        want_loss = sum(x != -100 for x in want)
        if len(got) != len(want):
            return (
                f"an example of {len(want)} tokens got {len(got)} labels: tokenize the whole "
                "conversation (prompt + completion) with the chat template, one label per token"
            )
        if n_loss == len(got):
            return "every token carries loss: put -100 on the prompt's tokens"
        if n_loss == 0:
            return "no token carries loss: the completion's tokens keep their ids as labels"
        first_got = next(i for i, x in enumerate(got) if x != -100)
        first_want = next(i for i, x in enumerate(want) if x != -100)
        if first_got < first_want and got[first_want:] == want[first_want:]:
            return (
                "the loss starts too early: <|im_start|>assistant\\n belongs to the prompt "
                "(tokenize the prompt with add_generation_prompt=True)"
            )
        if n_loss < want_loss:
            return (
                "too few tokens carry loss: the answer's <|im_end|> and the newline after it "
                "are part of the completion"
            )
        if n_loss == want_loss and [x == -100 for x in got] == [x == -100 for x in want]:
            return "the right positions, the wrong values: a label is the token id itself"
        return None
    return None


register(
    "04.3",
    "Write answer_04_3(tokenizer, example): the labels SFTTrainer gives a conversational "
    "prompt-completion example (token ids, -100 on the prompt).",
    lambda: reference_loss_mask,
    _same_labels,
    hints=[_mask_hint],
    fallback_hint="compare your labels with mark_loss on a batch from trainer.data_collator",
)


# ---------------------------------------------------------------- 04.4
CHATML_CASES = (
    (
        [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "Colour of the sky at noon?"},
            {"role": "assistant", "content": "Blue."},
        ],
        False,
    ),
    ([{"role": "user", "content": "Name a moon of Mars."}], True),
    (
        [
            {"role": "user", "content": "Two plus two?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": "And three more?"},
        ],
        True,
    ),
)
"""Exercise 04.4: conversations (none from the Yoda data) and add_generation_prompt for each."""

SMOLLM_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The system message SmolLM2-135M-Instruct's template adds when a conversation has none."""


def render_chatml(messages: list[dict], add_generation_prompt: bool) -> str:
    """The reference for 04.4: SmolLM2's chat template written out in Python."""
    parts = []
    if messages and messages[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{SMOLLM_DEFAULT_SYSTEM}<|im_end|>\n")
    for message in messages:
        parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def template_renderings() -> list[str]:
    """What the tokenizer's own template renders for the cases (the check's truth)."""
    tokenizer = _tokenizer()
    return [
        tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=g)
        for m, g in CHATML_CASES
    ]


def _renderings(answer) -> list[str]:
    if "apply_chat_template" in names_used(answer):
        raise AnswerMissing(
            "write it yourself: your answer calls apply_chat_template; build the string "
            "from the messages"
        )
    got = []
    for messages, generation_prompt in CHATML_CASES:
        text = call_answer(answer, [dict(m) for m in messages], generation_prompt)
        if not isinstance(text, str):
            raise AnswerMissing(f"return the rendered text as a str, not {type(text).__name__}")
        got.append(text)
    return got


def _same_rendering(answer, expected) -> bool:
    return _renderings(answer) == template_renderings()


def _chatml_hint(answer, expected):
    for got, want, (messages, generation_prompt) in zip(
        _renderings(answer), template_renderings(), CHATML_CASES, strict=True
    ):
        if got == want:
            continue
        if messages[0]["role"] != "system" and SMOLLM_DEFAULT_SYSTEM not in got:
            return (
                "a conversation without a system message gets SmolLM's default one: look at "
                "what the tokenizer renders for a user turn alone"
            )
        if generation_prompt and not got.endswith("<|im_start|>assistant\n"):
            return "with add_generation_prompt=True the text ends with <|im_start|>assistant\\n"
        if not generation_prompt and got.endswith("<|im_start|>assistant\n"):
            return "add the assistant header only when add_generation_prompt is True"
        if got.replace("\n", "") == want.replace("\n", ""):
            return (
                "the right pieces, the wrong newlines: each turn is "
                "<|im_start|>role\\ncontent<|im_end|>\\n"
            )
        return None
    return None


register(
    "04.4",
    "Write answer_04_4(messages, add_generation_prompt): the text SmolLM2's chat template "
    "renders for a list of {'role', 'content'} messages, built in Python without "
    "apply_chat_template.",
    lambda: render_chatml,
    _same_rendering,
    hints=[_chatml_hint],
    fallback_hint="print tokenizer.apply_chat_template(messages, tokenize=False): copy its shape",
)
