"""The Yoda preference pairs (helpers/data/yoda_pairs.py)."""

from __future__ import annotations

import json

import pytest

import helpers
from helpers.data import yoda_pairs


@pytest.mark.parametrize(
    ("yoda", "miss"),
    [
        ("Go alone, you must not.", "Go alone, must not you."),
        ("Dark, the cave is.", "Dark, is the cave."),
        ("Sell the horse, did the farmer?", "Sell the horse, the farmer did?"),
        (
            "If you are patient, find the answer, you will.",
            "If you are patient, find the answer, will you.",
        ),
    ],
)
def test_near_miss_turns_subject_and_auxiliary(yoda, miss):
    assert yoda_pairs.near_miss(yoda) == miss


def test_near_miss_refuses_a_sentence_without_a_comma():
    with pytest.raises(ValueError, match="not a Yoda sentence"):
        yoda_pairs.near_miss("You must go.")


@pytest.mark.parametrize("split", ["train", "test"])
def test_pairs_are_preference_rows(split):
    pairs = helpers.load_dataset("yoda-pairs", split)
    assert {"prompt", "chosen", "rejected", "kind"} <= set(pairs.column_names)
    assert set(pairs["kind"]) == set(yoda_pairs.KINDS)
    for row in pairs:
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        assert row["prompt"][-1]["role"] == "user"


def test_splits_share_no_sentence():
    train = {p["prompt"][-1]["content"] for p in yoda_pairs.pair_rows("train")}
    test = {p["prompt"][-1]["content"] for p in yoda_pairs.pair_rows("test")}
    assert train and test and not train & test


def test_adapter_mistakes_are_wrong_answers_of_their_split():
    rows = [json.loads(line) for line in yoda_pairs.MISTAKES_FILE.read_text().splitlines()]
    assert rows
    for split in ("train", "test"):
        yoda = {
            r["id"]: r["yoda"]
            for r in map(json.loads, (yoda_pairs.HERE / f"yoda_{split}.jsonl").open())
        }
        mine = [r for r in rows if r["split"] == split]
        assert mine and all(r["id"] in yoda and r["answer"] != yoda[r["id"]] for r in mine)
