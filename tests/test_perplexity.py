"""helpers.evaluation.perplexity on the tiny model: what it measures, and what it ignores."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.evaluation import perplexity

TEXTS = [
    "The for statement iterates over the items of any sequence.",
    "A class definition defines a class object.",
    "Augmented assignment is the combination, in a single statement, of a binary operation "
    "and an assignment statement.",
]


def _hf_loss(model, tokenizer, text, max_length=None):
    ids = tokenizer(
        text, return_tensors="pt", truncation=max_length is not None, max_length=max_length
    )["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item(), ids.shape[1] - 1


def test_one_text_is_exp_of_the_models_own_loss(tiny):
    model, tokenizer = tiny
    loss, _ = _hf_loss(model, tokenizer, TEXTS[0])
    assert math.isclose(perplexity(model, tokenizer, TEXTS[0]), math.exp(loss), rel_tol=1e-5)


def test_many_texts_are_a_token_weighted_mean(tiny):
    model, tokenizer = tiny
    losses = [_hf_loss(model, tokenizer, t) for t in TEXTS]
    mean_nll = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    assert math.isclose(perplexity(model, tokenizer, TEXTS), math.exp(mean_nll), rel_tol=1e-5)


def test_padding_does_not_count_batch_size_does_not_matter(tiny):
    model, tokenizer = tiny
    one_by_one = perplexity(model, tokenizer, TEXTS, batch_size=1)
    together = perplexity(model, tokenizer, TEXTS, batch_size=3)
    assert math.isclose(one_by_one, together, rel_tol=1e-5)


def test_texts_are_cut_to_max_length(tiny):
    model, tokenizer = tiny
    loss, n = _hf_loss(model, tokenizer, TEXTS[2], max_length=8)
    assert n == 7
    value = perplexity(model, tokenizer, [TEXTS[2]], max_length=8)
    assert math.isclose(value, math.exp(loss), rel_tol=1e-5)
    assert not math.isclose(value, perplexity(model, tokenizer, [TEXTS[2]]), rel_tol=1e-3)


def test_a_random_model_is_about_as_perplexed_as_uniform_guessing(tiny):
    model, tokenizer = tiny
    vocab = model.config.vocab_size
    assert vocab / 2 < perplexity(model, tokenizer, TEXTS) < vocab * 2


def test_mode_and_padding_side_are_restored(tiny):
    model, tokenizer = tiny
    side = tokenizer.padding_side
    model.train()
    tokenizer.padding_side = "left"
    try:
        perplexity(model, tokenizer, TEXTS)
        assert model.training and tokenizer.padding_side == "left"
    finally:
        model.eval()
        tokenizer.padding_side = side


@pytest.mark.parametrize(
    ("texts", "kwargs", "message"),
    [
        ([], {}, "non-empty list"),
        ([1, 2], {}, "non-empty list"),
        (["word"], {}, "no token to predict"),
        (TEXTS, {"max_length": 1}, "max_length must be at least 2"),
        (TEXTS, {"batch_size": 0}, "batch_size at least 1"),
    ],
)
def test_bad_input_is_refused(tiny, texts, kwargs, message):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=message):
        perplexity(model, tokenizer, texts, **kwargs)
