"""helpers.metrics against values computed by hand, and the doc-sections data set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from helpers import metrics


def test_normalize_answer_forgives_case_punctuation_and_spaces_only():
    assert metrics.normalize_answer("  Dark,  the cave IS. ") == "dark the cave is"
    assert metrics.normalized_exact_match("Dark, the cave is.", "dark the cave is")
    assert not metrics.normalized_exact_match("The cave is dark.", "Dark, the cave is.")
    assert not metrics.normalized_exact_match("Dark, the cave", "Dark, the cave is.")


def test_per_shape_means_by_hand():
    got = metrics.per_shape([1, 0, 1, 1, 0], ["a", "b", "a", "b", "c"])
    assert got == {"a": (1.0, 2), "b": (0.5, 2), "c": (0.0, 1)}
    with pytest.raises(ValueError, match="give one shape a score"):
        metrics.per_shape([1, 0], ["a"])


def test_paired_bootstrap_of_a_constant_difference_is_that_constant():
    # b beats a by exactly 1 on every example: every resample gives +1.
    d = metrics.paired_bootstrap([0, 0, 0, 0], [1, 1, 1, 1], resamples=50)
    assert (d.difference, d.low, d.high, d.n) == (1.0, 1.0, 1.0, 4)
    assert d.excludes_zero


def test_paired_bootstrap_matches_a_hand_computed_case():
    # differences are +1 on 2 of 4 examples, 0 elsewhere: observed mean 0.5; resampled means
    # are k/4 for k ~ Binomial(4, 1/2), so 95% of them lie within [0, 1] and the mean is 0.5.
    d = metrics.paired_bootstrap([0, 0, 1, 1], [1, 1, 1, 1], resamples=4000, seed=1)
    assert d.difference == 0.5
    assert d.low == 0.0 and d.high == 1.0
    assert not d.excludes_zero
    assert str(d) == "+0.500 [95% CI +0.000, +1.000] (n=4)"


def test_paired_bootstrap_is_seeded_and_pairing_narrows_the_interval():
    a = [i % 3 == 0 for i in range(60)]
    b = [i % 3 != 1 for i in range(60)]  # b = a plus 20 extra hits, same examples
    first = metrics.paired_bootstrap(a, b, seed=3)
    assert first == metrics.paired_bootstrap(a, b, seed=3)
    assert first.difference == pytest.approx(20 / 60)
    assert first.low < first.difference < first.high
    assert first.excludes_zero
    with pytest.raises(ValueError, match="equal lengths"):
        metrics.paired_bootstrap([1, 0], [1])


def test_paired_bootstrap_with_a_statistic_equals_the_mean_path():
    a = [0, 1, 0, 1, 1, 0, 0, 1]
    b = [1, 1, 0, 1, 1, 1, 0, 1]
    fast = metrics.paired_bootstrap(a, b, resamples=300, seed=5)
    slow = metrics.paired_bootstrap(
        a, b, statistic=lambda xs: sum(xs) / len(xs), resamples=300, seed=5
    )
    assert fast.difference == slow.difference == 0.25
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high))


def test_paired_bootstrap_of_macro_f1_by_hand():
    def macro_f1(pairs):
        truth, answers = zip(*pairs, strict=True)
        return f1_score(truth, answers, average="macro", zero_division=0)

    truth = ["x", "x", "y", "y"]
    a = list(zip(truth, ["x", "x", "x", "x"], strict=True))  # F1: x 2/3, y 0 -> 1/3
    b = list(zip(truth, truth, strict=True))  # perfect: 1
    d = metrics.paired_bootstrap(a, b, statistic=macro_f1, resamples=200)
    assert d.difference == pytest.approx(2 / 3)
    assert 0 <= d.low <= d.difference <= d.high <= 1


def test_quantile_is_numpy_linear():
    values = sorted([0.3, 0.1, 0.7, 0.2, 0.9, 0.4])
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        assert metrics._quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_parse_label_accepts_the_label_alone():
    labels = ["statements", "data model"]
    assert metrics.parse_label("Data model.", labels) == "data model"
    assert metrics.parse_label(" statements ", labels) == "statements"
    assert metrics.parse_label("This paragraph is about statements.", labels) is None
    assert metrics.parse_label("expressions", labels) is None


def test_ngram_overlap_by_hand():
    assert metrics.word_ngrams("The cat sat.", 2) == {("the", "cat"), ("cat", "sat")}
    seen = metrics.word_ngrams("the cat sat on the mat", 3)
    # "the cat sat down": 3-grams (the cat sat) seen, (cat sat down) not -> 1/2
    assert metrics.ngram_overlap("the cat sat down", seen, 3) == 0.5
    assert metrics.ngram_overlap("too short", seen, 3) == 0.0
    assert metrics.contamination(["a b c d"], ["a b c d", "x y z", "b c d e"], n=3) == [
        1.0,
        0.0,
        0.5,
    ]


def test_doc_sections_file_is_what_the_generator_writes(tmp_path):
    from helpers.data import doc_sections

    fresh = doc_sections.write_file(tmp_path / "rows.jsonl")
    assert fresh.read_text(encoding="utf-8") == doc_sections.FILE.read_text(encoding="utf-8")


def test_doc_sections_splits_are_balanced_and_disjoint():
    import helpers
    from helpers.data.doc_sections import LABELS

    data = helpers.load_dataset("doc-sections")
    train, test = data["train"], data["test"]
    assert set(train["label"]) == set(test["label"]) == set(LABELS)
    assert not set(train["text"]) & set(test["text"])
    for label in LABELS:
        share = test["label"].count(label) / len(test)
        assert abs(share - 1 / len(LABELS)) < 0.05
    row = test[0]
    assert row["completion"][0]["content"] == row["label"]
    assert row["prompt"][-1]["content"] == row["text"]


def test_plot_differences_draws_one_row_per_metric():
    import matplotlib

    matplotlib.use("Agg")
    from helpers.diagrams.evaluation import plot_differences

    sure = metrics.paired_bootstrap([0] * 5, [1] * 5, resamples=20)
    unsure = metrics.paired_bootstrap([0, 1, 0, 1], [1, 0, 0, 1], resamples=200)
    fig = plot_differences({"sure": sure, "unsure": unsure}, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sure", "unsure"]
    colors = [line.get_color() for line in ax.lines[:4:2]]
    assert colors == ["#55a868", "#c44e52"]  # green: excludes 0; red: crosses it
    with pytest.raises(ValueError, match="rows is empty"):
        plot_differences({})


def test_sample_is_repeatable_with_a_seed_and_refuses_temperature_zero(tiny):
    from helpers.decoding import sample

    model, tokenizer = tiny
    prompts = ["Hello", "Say something"]
    first = sample(model, tokenizer, prompts, seed=3, max_new_tokens=6)
    assert first == sample(model, tokenizer, prompts, seed=3, max_new_tokens=6)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    draws = {tuple(sample(model, tokenizer, prompts, seed=s, max_new_tokens=6)) for s in range(4)}
    assert len(draws) > 1  # a random model's distribution is flat: seeds differ
    assert not model.training
    with pytest.raises(ValueError, match="greedy"):
        sample(model, tokenizer, prompts, seed=0, temperature=0)


def test_rates_have_wilson_intervals():
    low, high = metrics.Rate(0, 20).interval
    assert low == 0.0 and 0.1 < high < 0.2  # a zero count still has an upper bound
    assert str(metrics.Rate(15, 20)) == " 15/20  = 0.75 [95% CI 0.53, 0.89]"
    # the interval narrows as n grows, around the same share
    assert metrics.Rate(150, 200).interval[0] > metrics.Rate(15, 20).interval[0]
