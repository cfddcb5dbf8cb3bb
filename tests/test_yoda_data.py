"""Tests for the English -> Yoda-speak data set (helpers/data/yoda.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpers.data import yoda
from helpers.data.yoda import (
    VERBS,
    Sentence,
    Subject,
    copula_clause,
    do_clause,
    modal_clause,
    perfect_clause,
    progressive_clause,
    to_english,
    to_yoda,
)

DATA_DIR = Path(yoda.__file__).resolve().parent
YOU = Subject("you", "pl")
ME = Subject("I", "1sg")

# (sentence structure, expected English, expected Yoda)
CASES = [
    # modal, incl. negation and "cannot"
    (
        Sentence(modal_clause(YOU, "must", VERBS["learn"], "the ways of the Force")),
        "You must learn the ways of the Force.",
        "Learn the ways of the Force, you must.",
    ),
    (
        Sentence(modal_clause(YOU, "must", VERBS["go"], "alone", negated=True)),
        "You must not go alone.",
        "Go alone, you must not.",
    ),
    (
        Sentence(modal_clause(Subject("Luke", "3sg"), "can", VERBS["win"], "the war", True)),
        "Luke cannot win the war.",
        "Win the war, Luke cannot.",
    ),
    # copula: agreement, "I am", intensifier, proper name, past plural
    (
        Sentence(copula_clause(Subject("the cave", "3sg"), "present", "dark")),
        "The cave is dark.",
        "Dark, the cave is.",
    ),
    (
        Sentence(copula_clause(Subject("the pilots", "pl"), "past", "very tired")),
        "The pilots were very tired.",
        "Very tired, the pilots were.",
    ),
    (
        Sentence(copula_clause(ME, "present", "ready for the journey")),
        "I am ready for the journey.",
        "Ready for the journey, I am.",
    ),
    (
        Sentence(copula_clause(Subject("Master Yoda", "3sg"), "past", "old", True)),
        "Master Yoda was not old.",
        "Old, Master Yoda was not.",
    ),
    # progressive
    (
        Sentence(
            progressive_clause(
                Subject("the student", "3sg"), "present", VERBS["read"], "an old book"
            )
        ),
        "The student is reading an old book.",
        "Reading an old book, the student is.",
    ),
    (
        Sentence(progressive_clause(ME, "past", VERBS["swim"], "in the lake", True)),
        "I was not swimming in the lake.",
        "Swimming in the lake, I was not.",
    ),
    # perfect (irregular participles)
    (
        Sentence(
            perfect_clause(Subject("the captain", "3sg"), "present", VERBS["find"], "the map")
        ),
        "The captain has found the map.",
        "Found the map, the captain has.",
    ),
    (
        Sentence(perfect_clause(Subject("they", "pl"), "past", VERBS["write"], "a letter")),
        "They had written a letter.",
        "Written a letter, they had.",
    ),
    # do-support: past with adverbial, 3sg present, plural present, irregular, negation
    (
        Sentence(
            do_clause(
                Subject("the pilot", "3sg"),
                "past",
                VERBS["repair"],
                "the engine yesterday",
            )
        ),
        "The pilot repaired the engine yesterday.",
        "Repair the engine yesterday, the pilot did.",
    ),
    (
        Sentence(do_clause(Subject("my sister", "3sg"), "present", VERBS["read"], "many books")),
        "My sister reads many books.",
        "Read many books, my sister does.",
    ),
    (
        Sentence(do_clause(Subject("they", "pl"), "present", VERBS["play"], "chess")),
        "They play chess.",
        "Play chess, they do.",
    ),
    (
        Sentence(do_clause(Subject("Leia", "3sg"), "past", VERBS["bring"], "a lamp")),
        "Leia brought a lamp.",
        "Bring a lamp, Leia did.",
    ),
    (
        Sentence(do_clause(Subject("the child", "3sg"), "present", VERBS["study"], "the stars")),
        "The child studies the stars.",
        "Study the stars, the child does.",
    ),
    (
        Sentence(do_clause(ME, "past", VERBS["lose"], "the key", negated=True)),
        "I did not lose the key.",
        "Lose the key, I did not.",
    ),
    # questions
    (
        Sentence(modal_clause(YOU, "will", VERBS["help"], "me"), question=True),
        "Will you help me?",
        "Help me, will you?",
    ),
    (
        Sentence(
            modal_clause(Subject("the droid", "3sg"), "can", VERBS["open"], "the door"),
            question=True,
        ),
        "Can the droid open the door?",
        "Open the door, can the droid?",
    ),
    (
        Sentence(copula_clause(Subject("the tower", "3sg"), "present", "tall"), question=True),
        "Is the tower tall?",
        "Tall, is the tower?",
    ),
    (
        Sentence(
            do_clause(Subject("the farmer", "3sg"), "past", VERBS["sell"], "the horse"),
            question=True,
        ),
        "Did the farmer sell the horse?",
        "Sell the horse, did the farmer?",
    ),
    (
        Sentence(do_clause(Subject("Han", "3sg"), "present", VERBS["fly"], "the ship"), True),
        "Does Han fly the ship?",
        "Fly the ship, does Han?",
    ),
    (
        Sentence(copula_clause(ME, "present", "ready"), question=True),
        "Am I ready?",
        "Ready, am I?",
    ),
    # leading subordinate clause kept verbatim
    (
        Sentence(
            modal_clause(YOU, "will", VERBS["find"], "the answer"),
            lead="If you are patient",
        ),
        "If you are patient, you will find the answer.",
        "If you are patient, find the answer, you will.",
    ),
    (
        Sentence(
            perfect_clause(Subject("the pilots", "pl"), "past", VERBS["repair"], "the ship"),
            lead="Before the storm came",
        ),
        "Before the storm came, the pilots had repaired the ship.",
        "Before the storm came, repaired the ship, the pilots had.",
    ),
]


@pytest.mark.parametrize(("sentence", "english", "expected"), CASES)
def test_hand_written_pairs(sentence, english, expected):
    assert to_english(sentence) == english
    assert to_yoda(sentence) == expected


def test_article_and_verb_table():
    assert yoda.article("old") == "an" and yoda.article("iron") == "an"
    assert yoda.article("map") == "a"
    go = VERBS["go"]
    assert (go.s, go.past, go.pp, go.ing) == ("goes", "went", "gone", "going")
    assert VERBS["carry"].s == "carries" and VERBS["plan"].ing == "planning"


@pytest.fixture(scope="module")
def splits():
    return yoda.build_splits()


def _read(split):
    return (DATA_DIR / f"yoda_{split}.jsonl").read_bytes()


def test_committed_files_are_reproducible(splits, tmp_path):
    written = yoda.write_files(tmp_path)
    assert sorted(p.name for p in written) == ["yoda_test.jsonl", "yoda_train.jsonl"]
    for split in ("train", "test"):
        regenerated = (tmp_path / f"yoda_{split}.jsonl").read_bytes()
        assert regenerated == _read(split), f"yoda_{split}.jsonl is stale"
        expected = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in splits[split])
        assert regenerated == expected.encode("utf-8")


def test_generate_examples_is_deterministic():
    assert yoda.generate_examples(50, seed=7) == yoda.generate_examples(50, seed=7)
    assert yoda.generate_examples(50, seed=7) != yoda.generate_examples(50, seed=8)


def test_sizes_ids_and_uniqueness(splits):
    assert len(splits["train"]) == 1200
    assert len(splits["test"]) == 200
    everything = splits["train"] + splits["test"]
    assert len({e["id"] for e in everything}) == len(everything)
    assert len({e["english"] for e in everything}) == len(everything)
    for split, items in splits.items():
        assert [e["id"] for e in items] == [f"yoda-{split}-{i:04d}" for i in range(len(items))]


def test_shapes_balanced(splits):
    train = Counter(e["shape"] for e in splits["train"])
    test = Counter(e["shape"] for e in splits["test"])
    assert set(train) == set(test) == set(yoda.SHAPES)
    for shape in yoda.SHAPES:
        assert train[shape] / 1200 == pytest.approx(test[shape] / 200, abs=0.02)


def test_record_format(splits):
    for e in splits["train"] + splits["test"]:
        assert list(e) == ["id", "shape", "english", "yoda", "messages"]
        assert e["messages"] == [
            {"role": "system", "content": "Translate into Yoda-speak."},
            {"role": "user", "content": e["english"]},
            {"role": "assistant", "content": e["yoda"]},
        ]
        assert e["yoda"] != e["english"]
        assert e["yoda"][0].isupper() and e["english"][0].isupper()
        assert "  " not in e["yoda"] and "  " not in e["english"]


def _words(text):
    for mark in ",.?":
        text = text.replace(mark, " ")
    return Counter(text.lower().split())


def test_rule_invariants(splits):
    for e in splits["train"] + splits["test"]:
        english, target = e["english"], e["yoda"]
        assert english[-1] in ".?" and target[-1] == english[-1]
        assert (e["shape"] == "question") == (english[-1] == "?")
        extra = _words(target) - _words(english)
        missing = _words(english) - _words(target)
        if e["shape"] != "do_support":
            assert extra == missing == Counter(), e
        else:
            # Only "do/does/did" and the verb's base form may be added, and only
            # the inflected verb may disappear (nothing changes when negated).
            assert sum(missing.values()) <= 1, e
            assert extra["do"] + extra["does"] + extra["did"] == (0 if " not " in english else 1)
            assert sum(extra.values()) == sum(missing.values()) + (" not " not in english)


def test_do_support_ends_with_auxiliary(splits):
    for e in splits["train"] + splits["test"]:
        if e["shape"] != "do_support":
            continue
        words = e["yoda"].rstrip(".").split()
        aux = words[-2] if words[-1] == "not" else words[-1]
        assert aux in ("do", "does", "did"), e
