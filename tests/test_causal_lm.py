"""helpers.causal_lm: padded vs block examples, stopping and resuming a Trainer run, TensorBoard."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

import helpers
from helpers.causal_lm import (
    IGNORE_INDEX,
    StepTimer,
    StopAtStep,
    group_texts,
    logged_losses,
    mask_pad_labels,
    pad_probabilities,
    padded_examples,
    padding_share,
    read_scalars,
    tokenize_with_eos,
)
from helpers.evaluation import perplexity

# peft 0.21 reads a renamed transformers attribute (see helpers/training.py); not ours to fix


TEXTS = [
    "The for statement iterates over the items of any sequence.",
    "A class definition defines a class object.",
    "Augmented assignment is the combination, in a single statement, of a binary operation "
    "and an assignment statement.",
    "The with statement wraps the execution of a block with methods of a context manager.",
] * 3


def test_padded_examples_copy_labels_and_count_padding(tiny):
    _, tokenizer = tiny
    ex = padded_examples(tokenizer, TEXTS[:2], max_length=16)
    assert all(len(row) == 16 for row in ex["input_ids"])
    assert ex["labels"] == ex["input_ids"]
    real = sum(sum(m) for m in ex["attention_mask"])
    assert padding_share(ex) == pytest.approx((32 - real) / 32)
    assert padding_share(ex) > 0


def test_masking_pad_labels_leaves_no_padding_in_the_loss(tiny):
    _, tokenizer = tiny
    ex = mask_pad_labels(padded_examples(tokenizer, TEXTS[:2], max_length=16))
    assert padding_share(ex) == 0.0
    for labels, ids, mask in zip(ex["labels"], ex["input_ids"], ex["attention_mask"], strict=True):
        assert [lab for lab, m in zip(labels, mask, strict=True) if m] == [
            i for i, m in zip(ids, mask, strict=True) if m
        ]
        assert all(lab == IGNORE_INDEX for lab, m in zip(labels, mask, strict=True) if not m)
    with pytest.raises(ValueError, match="no position carries loss"):
        padding_share({"labels": [[IGNORE_INDEX]], "attention_mask": [[0]]})


def test_group_texts_makes_full_blocks_in_order_and_drops_the_rest():
    ids = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
    out = group_texts({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}, 4)
    assert out["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert out["labels"] == out["input_ids"] and out["labels"] is not out["input_ids"]
    assert out["attention_mask"] == [[1] * 4] * 2
    with pytest.raises(ValueError, match="at least 2"):
        group_texts({"input_ids": ids}, 1)


def test_tokenize_with_eos_separates_documents(tiny):
    _, tokenizer = tiny
    enc = tokenize_with_eos(tokenizer, TEXTS[:2])
    assert all(row[-1] == tokenizer.eos_token_id for row in enc["input_ids"])
    blocks = group_texts(enc, 8)
    assert padding_share(blocks) == 0.0


def test_perplexity_is_exp_of_mean_nll_by_hand(tiny):
    """Hand computation: log-softmax of every position, NLL of the next token, mean, exp."""
    model, tokenizer = tiny
    texts = TEXTS[:3]
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
            logp = torch.log_softmax(model(input_ids=ids[None]).logits[0].double(), -1)
            for pos in range(len(ids) - 1):
                nll -= logp[pos, ids[pos + 1]].item()
                count += 1
    expected = math.exp(nll / count)
    assert perplexity(model, tokenizer, texts, batch_size=2) == pytest.approx(expected, rel=1e-4)


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def _run(tmp_path, name, *, lora: bool, stop_at=None, resume=None, report_to="none"):
    """A tiny, deterministic Trainer run on blocks of text: 6 steps, a checkpoint every 2."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    if lora:
        from peft import get_peft_model

        model = get_peft_model(model, helpers.lora_config(r=4))
    data = Dataset.from_dict(group_texts(tokenize_with_eos(tokenizer, TEXTS), 16))
    args = TrainingArguments(
        str(tmp_path / name),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-3 if lora else 1e-4,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        report_to=report_to,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    counter = _CountSteps()
    callbacks = [counter, StopAtStep(stop_at)] if stop_at else [counter]
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=default_data_collator,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.steps_run = counter.steps
    return trainer


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, lora):
    whole = _run(tmp_path, "whole", lora=lora)
    cut = _run(tmp_path, "cut", lora=lora, stop_at=3)
    assert cut.state.global_step == 3
    resumed = _run(tmp_path, "cut", lora=lora, resume=str(tmp_path / "cut" / "checkpoint-2"))
    assert resumed.state.global_step == 6 and resumed.steps_run == 4  # steps 3-6 only
    # losses: the resumed run's history is the checkpoint's (steps 1-2) plus its own (3-6)
    expected = logged_losses(whole.state.log_history)
    got = logged_losses(resumed.state.log_history)
    assert [s for s, _ in got] == [s for s, _ in expected] == list(range(1, 7))
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-5)
    # the weights that were trained end equal (tolerance: float32 rounding only)
    a = {n: p for n, p in whole.model.named_parameters() if p.requires_grad}
    b = dict(resumed.model.named_parameters())
    assert a and all(torch.allclose(a[n], b[n], atol=1e-6, rtol=0) for n in a)
    # and training changed them, so the comparison is not trivially true
    start = helpers.load_model("tiny-random-smollm2", device="cpu")[0]
    if not lora:
        assert not torch.allclose(a["model.embed_tokens.weight"], start.model.embed_tokens.weight)


def test_stop_at_step_refuses_zero():
    with pytest.raises(ValueError, match="at least 1"):
        StopAtStep(0)


def test_tensorboard_events_read_back_equal_the_logged_losses(tmp_path):
    import tensorboard  # noqa: F401  (pinned: a broken install fails here)

    trainer = _run(tmp_path, "tb", lora=True, report_to="tensorboard")
    points = read_scalars(tmp_path / "tb")
    logged = logged_losses(trainer.state.log_history)
    assert [s for s, _ in points] == [s for s, _ in logged]
    assert [v for _, v in points] == pytest.approx([v for _, v in logged], rel=1e-6)
    with pytest.raises(KeyError, match="no scalar"):
        read_scalars(tmp_path / "tb", "no/such/tag")
    with pytest.raises(FileNotFoundError, match="report_to='tensorboard'"):
        read_scalars(tmp_path / "empty")


class _Clock:
    """A fake clock: each step takes the next of `durations` seconds."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0

    def __call__(self):
        if self.calls % 2:  # an on_step_end reading: the step took its duration
            self.now += self.durations.pop(0)
        self.calls += 1
        return self.now


def test_step_timer_times_steps_and_stops_within_the_budget(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    data = Dataset.from_dict(group_texts(tokenize_with_eos(tokenizer, TEXTS), 16))
    args = TrainingArguments(
        str(tmp_path / "t"),
        max_steps=10,
        per_device_train_batch_size=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    # the first step is slow (warm-up), the next ones take 1 s. After step 1 the typical
    # step is that first one (3 s); from step 2 on it is 1 s. With a 7.5 s budget, after
    # step 5 (7 s spent) one more step would end at 8 s > 7.5 s: the run stops there.
    timer = StepTimer(budget=7.5, clock=_Clock([3.0] + [1.0] * 9))
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[timer])
    trainer.data_collator = default_data_collator
    trainer.train()
    assert trainer.state.global_step == 5
    assert timer.steps == [3.0] + [1.0] * 4 and timer.seconds == 7.0 and timer.typical == 1.0
    # without a budget it only times: every step, real durations
    timer = StepTimer()
    Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=default_data_collator,
        callbacks=[timer],
    ).train()
    assert len(timer.steps) == 10 and all(s > 0 for s in timer.steps)
    with pytest.raises(ValueError, match="positive"):
        StepTimer(budget=0)
    with pytest.raises(ValueError, match="no step timed"):
        _ = StepTimer().typical


def test_pad_probabilities_by_hand(tiny):
    """The softmax of the pad token's logit at the three places, averaged over texts."""
    model, tokenizer = tiny
    texts = TEXTS[:2]
    pad = tokenizer.pad_token_id
    inside, after_text, after_pad = [], [], []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text)["input_ids"]
            logits = model(input_ids=torch.tensor([ids + [pad]])).logits[0]
            p = torch.softmax(logits.double(), -1)[:, pad]
            inside += p[: len(ids) - 1].tolist()
            after_text.append(p[len(ids) - 1].item())
            after_pad.append(p[len(ids)].item())
    got = pad_probabilities(model, tokenizer, texts)
    assert got["inside"] == pytest.approx(sum(inside) / len(inside), rel=1e-4)
    assert got["after_text"] == pytest.approx(sum(after_text) / 2, rel=1e-4)
    assert got["after_pad"] == pytest.approx(sum(after_pad) / 2, rel=1e-4)
    assert len(set(got.values())) == 3  # three different places, three different numbers
    model.train()
    pad_probabilities(model, tokenizer, texts[:1])
    assert model.training  # the mode is restored
    model.eval()
    with pytest.raises(ValueError, match="texts is empty"):
        pad_probabilities(model, tokenizer, [])
