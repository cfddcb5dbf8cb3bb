"""helpers.exercises: every exercise accepts its answer, rejects wrong ones, says so stably."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from helpers import exercises


def _collect_cases() -> tuple[dict, dict]:
    """RIGHT and WRONG answers from every chapter's tests/test_exercises_chNN.py."""
    right, wrong = {}, {}
    for path in sorted(Path(__file__).parent.glob("test_exercises_ch*.py")):
        spec = importlib.util.spec_from_file_location(f"_cases_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        right.update(module.RIGHT)
        wrong.update(module.WRONG)
    return right, wrong


RIGHT, WRONG = _collect_cases()

VERDICT = re.compile(r"^Exercise \d\d\.\d+: (correct|not yet: \S.*|not answered yet: \S.*)$")


def test_every_exercise_has_right_and_wrong_cases():
    assert set(exercises.EXERCISES) == set(RIGHT) == set(WRONG)


@pytest.mark.parametrize("exercise_id", sorted(exercises.EXERCISES))
def test_the_solution_is_accepted(exercise_id):
    assert exercises.verdict(exercise_id, exercises.solution(exercise_id)) == (
        True,
        f"Exercise {exercise_id}: correct",
    )


@pytest.mark.parametrize(
    ("exercise_id", "answer"), [(i, a) for i, answers in RIGHT.items() for a in answers]
)
def test_right_answers_in_other_forms_are_accepted(exercise_id, answer):
    assert exercises.verdict(exercise_id, answer)[0]


@pytest.mark.parametrize(
    ("exercise_id", "answer", "hint"),
    [(i, a, h) for i, cases in WRONG.items() for a, h in cases],
)
def test_wrong_answers_are_rejected_with_a_hint(exercise_id, answer, hint):
    correct, line = exercises.verdict(exercise_id, answer)
    assert not correct
    assert line.startswith(f"Exercise {exercise_id}: not yet: ")
    assert hint in line
    assert VERDICT.match(line)
    assert exercises.verdict(exercise_id, answer) == (correct, line)  # deterministic


@pytest.mark.parametrize("blank", [None, ...])
def test_a_blank_answer_asks_for_one(blank):
    correct, line = exercises.verdict("01.2", blank)
    assert not correct
    assert (
        line == "Exercise 01.2: not answered yet: replace the ... with your answer and run the cell"
    )


def test_check_prints_one_line_and_returns_a_bool(capsys):
    assert exercises.check("01.2", 65504) is True
    assert exercises.check("01.2", 65535) is False
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Exercise 01.2: correct"
    assert lines[1].startswith("Exercise 01.2: not yet: ")
    assert len(lines) == 2


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="01.1, 01.2"):
        exercises.check("99.9", 1)


def test_registering_a_new_exercise_and_twice():
    try:
        exercises.register(
            "99.1",
            "2 + 2?",
            lambda: 4,
            exercises.number(abs_tol=0.1),
            hints=[exercises.near_value(5, "that is 2 + 3")],
        )
        assert exercises.check("99.1", 4.05)
        assert exercises.verdict("99.1", 5)[1] == "Exercise 99.1: not yet: that is 2 + 3"
        assert exercises.verdict("99.1", 7)[1].endswith("try again")
        with pytest.raises(ValueError, match="twice"):
            exercises.register("99.1", "again", lambda: 4, exercises.number())
    finally:
        exercises.EXERCISES.pop("99.1", None)


def test_one_of_comparison():
    compare = exercises.one_of(["bf16", "fp16"])
    assert compare(" BF16 ", "bf16")
    assert not compare("fp16", "bf16")
    with pytest.raises(Exception, match="one of: 'bf16', 'fp16'"):
        compare("int8", "bf16")


def test_a_function_answer_that_is_not_written_yet_or_raises_gets_a_verdict_not_a_traceback():
    exercises.register(
        "99.1",
        "a test-only exercise: return twice the input",
        lambda: 4,
        lambda answer, expected: exercises.call_answer(answer, 2) == expected,
    )
    try:

        def unanswered(x): ...

        def crashing(x):
            raise ValueError("boom")

        assert exercises.verdict("99.1", lambda x: 2 * x) == (True, "Exercise 99.1: correct")
        correct, line = exercises.verdict("99.1", unanswered)
        assert not correct and line.startswith("Exercise 99.1: not answered yet: write the body")
        correct, line = exercises.verdict("99.1", crashing)
        assert not correct and line == "Exercise 99.1: not yet: your answer raised ValueError: boom"
        correct, line = exercises.verdict("99.1", 4)
        assert not correct and "asks for a function (def ...), got int" in line
    finally:
        del exercises.EXERCISES["99.1"]


def _chapter_cells():
    import nbformat

    from helpers.grading import cells

    root = Path(__file__).resolve().parent.parent / "notebooks"
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        yield path.name[:2], nb, cells


def test_every_chapter_exercise_is_checked_in_its_chapter():
    checked = set()
    for _, nb, cells in _chapter_cells():
        checked |= {cells.exercise_id(c) for c in nb.cells if cells.is_graded(c)}
    chapters = {number[:2] for number in checked}
    registered = {n for n in exercises.EXERCISES if n[:2] in chapters}
    assert registered == checked


def test_chapters_01_on_have_two_exercises_where_the_learner_writes_code():
    """A code exercise's answer cell is a function; a number to look up does not count."""
    for chapter, nb, cells in _chapter_cells():
        written = [
            c for c in nb.cells if cells.is_solution(c) and c.source.lstrip().startswith("def ")
        ]
        if chapter != "00":
            assert len(written) >= 2, f"chapter {chapter} has {len(written)} code exercises"
