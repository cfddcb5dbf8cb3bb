"""Instructor tools: student copies and regrading, on small notebooks (a kernel start is ~3 s)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import repo
from helpers.grading import cells, compare, regrade, student
from tools import notebooks

ROOT = repo.repo_root()
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTER_01 = ROOT / "notebooks" / "01_hardware_and_numbers.ipynb"
TIMEOUT = 60


def _code(source, cell_id, tags=()):
    cell = new_code_cell(source)
    cell.id = cell_id
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


SETUP = """\
from helpers import exercises

# exercises of this test only, so that the chapters' own can change freely
exercises.register("90.1", "twice the parameters", lambda: 269_030_016, exercises.number())
exercises.register("90.2", "the largest fp16 number", lambda: 65504.0, exercises.number())
print("ready")"""


def _tiny_chapter():
    """A chapter in miniature, following the exercise cell convention."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    intro = new_markdown_cell("# A tiny chapter")
    intro.id = "intro"
    nb.cells = [
        intro,
        _code(SETUP, "setup"),
        _code("print(sum(range(10)))", "facts"),
        _code("import random\n\nprint(random.random())", "noisy", ["nbval-ignore-output"]),
        _code("answer_90_2 = (2 - 2**-10) * 2**15  # your answer here", "answer-1", ["solution"]),
        _code('exercises.check("90.2", answer_90_2)', "check-1", ["graded"]),
        _code("answer_90_1 = 134_515_008 * 2  # your answer here", "answer-2", ["solution"]),
        _code('exercises.check("90.1", answer_90_1)', "check-2", ["graded"]),
    ]
    return nb


def _fill(nb, answers: dict[str, str]):
    """A student's work: the placeholders of the student copy replaced by `answers`."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for name, value in answers.items():
            cell.source = cell.source.replace(f"{name} = ...", f"{name} = {value}")
    return nb


def _executed(nb, path: Path) -> Path:
    nbformat.write(nb, path)
    notebooks.execute(path, timeout=TIMEOUT)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("grading")


@pytest.fixture(scope="module")
def reference(work):
    return _executed(_tiny_chapter(), work / "reference.ipynb")


@pytest.fixture(scope="module")
def honest(work, reference):
    """The student copy, answered right by the student and run top to bottom."""
    blank = student.student_copy(nbformat.read(reference, as_version=4))
    answers = {"answer_90_2": "65504.0", "answer_90_1": "269_030_016"}
    return _executed(_fill(blank, answers), work / "honest.ipynb")


def _variant(source: Path, target: Path, change) -> Path:
    nb = nbformat.read(source, as_version=4)
    change(nb)
    nbformat.write(nb, target)
    return target


def _cell(nb, cell_id):
    return next(cell for cell in nb.cells if cell.get("id") == cell_id)


# --- regrade ---------------------------------------------------------------------------------


def test_an_honest_submission_passes_from_the_command_line(reference, honest, work):
    report_path = work / "honest.json"
    result = subprocess.run(
        [sys.executable, "-m", "helpers.grading.regrade", str(reference), str(honest)]
        + ["--timeout", str(TIMEOUT), "--json", str(report_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Score: 2/2 exercises correct; outputs genuine" in result.stdout
    assert result.stdout.rstrip().endswith("Result: PASS")
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["score"] == {"correct": 2, "total": 2}
    statuses = {cell["cell_id"]: cell["status"] for cell in report["cells"]}
    assert statuses["noisy"] == "ignored" and statuses["facts"] == "match"


def test_a_forged_output_and_an_edited_check_fail_and_are_named(reference, honest, work):
    def forge(nb):
        _cell(nb, "facts").outputs[0].text = "46\n"  # the code prints 45
        check = _cell(nb, "check-2")
        check.source = 'print("Exercise 90.1: correct")'
        check.outputs = [new_output("stream", name="stdout", text="Exercise 90.1: correct\n")]

    submission = _variant(honest, work / "forged.ipynb", forge)
    report = regrade.regrade(reference, submission, timeout=TIMEOUT)
    assert not report.passed
    assert [cell.cell_id for cell in report.failed_cells()] == ["facts"]
    facts = report.failed_cells()[0]
    assert facts.status == "differs" and "-46" in facts.detail and "+45" in facts.detail
    assert report.exercise("90.2").passed
    assert report.exercise("90.1").status == "changed"
    assert report.score == (1, 2)
    text = regrade.format_report(report)
    assert "FAIL differs: id facts" in text and "Result: FAIL" in text
    assert "edited outside solution cells: check-2" in text


def test_a_wrong_answer_fails_and_names_the_exercise(reference, work):
    blank = student.student_copy(nbformat.read(reference, as_version=4))
    wrong = _fill(blank, {"answer_90_2": "65536.0", "answer_90_1": "269_030_016"})
    submission = _executed(wrong, work / "wrong.ipynb")
    report = regrade.regrade(reference, submission, timeout=TIMEOUT)
    assert report.outputs_passed  # the outputs are genuine, the answer is not right
    assert not report.passed and report.score == (1, 2)
    result = report.exercise("90.2")
    assert result.status == "wrong" and result.detail.startswith("Exercise 90.2: not yet")
    assert "FAIL 90.2: wrong" in regrade.format_report(report)


def test_a_hanging_cell_fails_by_timeout_within_the_limit(honest, reference, work):
    def hang(nb):
        index = nb.cells.index(_cell(nb, "facts"))
        nb.cells.insert(index + 1, _code("while True:\n    pass", "hang"))

    submission = _variant(honest, work / "hang.ipynb", hang)
    # The limit applies to every cell: 20 s leaves the set-up cell (an import, about 2 s on an
    # idle 2-core machine, 5 s or more on a busy one) a margin of 4x; the hanging cell then
    # costs 20 s. The whole regrade must end soon after it: no later cell waits its turn.
    limit = 20
    start = time.monotonic()
    report = regrade.regrade(reference, submission, timeout=limit)
    assert time.monotonic() - start < limit + 90  # plus starting and stopping a kernel, 2x
    status = {cell.cell_id: cell.status for cell in report.cells}
    assert status["hang"] == "timeout"
    assert status["setup"] == status["facts"] == "match"
    assert status["check-1"] == status["check-2"] == "not run"  # not xfail: failures
    assert not report.passed and report.score == (0, 2)
    assert {e.status for e in report.exercises} == {"not run"}
    text = regrade.format_report(report)
    assert "FAIL timeout: id hang" in text
    assert (
        "FAIL not run (an earlier cell timed out): 5 cell(s), ids noisy, answer-1, check-1" in text
    )


def test_deleted_reordered_and_added_cells_are_reported_not_crashed_on(honest, reference, work):
    def shuffle(nb):
        nb.cells.remove(_cell(nb, "facts"))
        nb.cells.remove(_cell(nb, "check-2"))
        check = _cell(nb, "check-1")
        nb.cells.remove(check)
        nb.cells.insert(nb.cells.index(_cell(nb, "answer-1")), check)  # check before answer
        nb.cells.append(_code("1 + 1", "scratch"))

    submission = _variant(honest, work / "shuffled.ipynb", shuffle)
    report = regrade.regrade(reference, submission, timeout=TIMEOUT)
    assert report.structure.missing == ["facts", "check-2"]
    assert len(report.structure.moved) == 1
    assert set(report.structure.moved) <= {"check-1", "answer-1"}
    assert report.structure.added == ["scratch"]
    assert report.exercise("90.1").status == "missing"
    assert report.exercise("90.2").status == "not run"  # raised NameError: run too early
    errors = {cell.cell_id: cell.detail for cell in report.failed_cells()}
    assert "NameError" in errors["check-1"]
    assert errors.keys() == {"check-1", "scratch"}  # scratch was never executed
    text = regrade.format_report(report)
    assert "FAIL missing: facts, check-2" in text and "note added by the student: scratch" in text
    assert not report.passed


def test_regrade_shortcut_module_has_the_same_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "helpers.regrade", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0
    assert "Not a sandbox" in result.stdout and "--timeout" in result.stdout


# --- the comparison follows nbval -------------------------------------------------------------


def _stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


def _result(text, png=None):
    data = {"text/plain": text}
    if png:
        data["image/png"] = png
    return new_output("execute_result", data=data, execution_count=1)


COMPARISON_CASES = {
    "same text": ([_stream("a\n")], [_stream("a\n")]),
    "other text": ([_stream("a\n")], [_stream("b\n")]),
    "streams split differently": ([_stream("a\n"), _stream("b\n")], [_stream("a\nb\n")]),
    "carriage return applied": ([_stream("50%\r100%\n")], [_stream("100%\n")]),
    "extra stderr": ([_stream("a\n"), _stream("warn\n", "stderr")], [_stream("a\n")]),
    "png not compared": ([_result("<Figure>", "AAAA")], [_result("<Figure>", "BBBB")]),
    "png missing": ([_result("<Figure>")], [_result("<Figure>", "BBBB")]),
    "sanitized address": ([_stream("at 0x7f00aa11bb22\n")], [_stream("at 0x7f00cc33dd44\n")]),
    "sanitized cache": (
        [_stream("/home/x/.cache/smol-course/m\n")],
        [_stream("/root/.cache/smol-course/m\n")],
    ),
    "one output more": ([_result("1"), _result("2")], [_result("1")]),
}


class _NbvalStub:
    """Just enough of nbval's pytest item to call its own compare_outputs."""

    def __init__(self, patterns):
        from nbval import plugin

        self.parent = type("P", (), {})()
        self.parent.skip_compare = compare.SKIP_COMPARE
        self.parent.sanitize_patterns = dict(patterns)
        self.colors = plugin.nocolors
        self._plugin = plugin

    def sanitize(self, s):
        return self._plugin.IPyNbCell.sanitize(self, s)

    def format_output_compare(self, key, left, right):
        pass

    def verdict(self, fresh, stored):
        fresh, stored = compare.merged(fresh), compare.merged(stored)
        return self._plugin.IPyNbCell.compare_outputs(self, fresh, stored)


@pytest.mark.parametrize("case", sorted(COMPARISON_CASES))
def test_the_comparison_agrees_with_nbval(case):
    fresh, stored = COMPARISON_CASES[case]
    patterns = compare.load_sanitizers()
    ours = compare.compare(fresh, stored, patterns) is None
    assert ours == _NbvalStub(patterns).verdict(fresh, stored)
    expected_equal = case in {
        "same text",
        "streams split differently",
        "carriage return applied",
        "png not compared",
        "png missing",  # images are left out of the comparison altogether
        "sanitized address",
        "sanitized cache",
    }
    assert ours == expected_equal


def test_tags_and_comments_set_the_options_as_in_nbval():
    assert compare.cell_options(_code("x", "a")) == {
        "check": True,
        "skip": False,
        "check_exception": False,
    }
    assert not compare.cell_options(_code("x", "a", ["nbval-ignore-output"]))["check"]
    assert not compare.cell_options(_code("# NBVAL_IGNORE_OUTPUT\nx", "a"))["check"]
    assert compare.cell_options(_code("x", "a", ["nbval-skip"]))["skip"]
    assert compare.cell_options(_code("x", "a", ["raises-exception"]))["check_exception"]


# --- student copies ---------------------------------------------------------------------------


def test_the_student_copy_of_chapter_01_keeps_ids_and_checks_and_no_solution(tmp_path):
    target = tmp_path / "student.ipynb"
    assert student.main([str(CHAPTER_01), str(target)]) == 0
    ref = nbformat.read(CHAPTER_01, as_version=4)
    copy_ = nbformat.read(target, as_version=4)
    assert [c.id for c in copy_.cells] == [c.id for c in ref.cells]
    graded = [c for c in ref.cells if cells.is_graded(c)]
    assert len(graded) >= 2
    for ref_cell, cell in zip(ref.cells, copy_.cells, strict=True):
        if cells.is_graded(ref_cell):
            assert cell.source == ref_cell.source and cells.is_graded(cell)
        if cells.is_solution(ref_cell) or cells.is_graded(ref_cell):
            assert cell.outputs == [] and cell.execution_count is None
        elif cell.cell_type == "code":
            assert cell.outputs == ref_cell.outputs  # everything else as shipped
        if cells.is_solution(ref_cell):
            for line in cell.source.splitlines():
                if line.startswith("answer_"):
                    assert line.endswith(" = ...  # your answer here"), line
    assert student.leaked_solutions(ref, copy_) == []
    assert not re.search(r"Exercise \d\d\.\d+: correct", target.read_text())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_follows_the_exercise_convention(path):
    nb = nbformat.read(path, as_version=4)
    blank = student.student_copy(nb)  # raises ConventionError on a solution cell it can't blank
    graded = [c for c in nb.cells if cells.is_graded(c)]
    answers = {c.id for c in nb.cells if cells.is_solution(c)}
    for cell in graded:
        number = cells.exercise_id(cell)
        assert number, f"graded cell {cell.id} calls no exercises.check"
        assert (
            cell.source.strip() == f'exercises.check("{number}", answer_{number.replace(".", "_")})'
        )
    assert len(answers) >= len(graded) or not graded
    assert [c.id for c in blank.cells] == [c.id for c in nb.cells]


def test_blanking_handles_multi_line_answers_and_refuses_other_code():
    source = "# try it\nanswer_02_1 = [\n    1,\n    2,\n]  # your answer here\nanswer_02_2 = 3"
    assert cells.blank_solution(source) == (
        "# try it\nanswer_02_1 = ...  # your answer here\nanswer_02_2 = ...  # your answer here"
    )
    with pytest.raises(cells.ConventionError, match="line 1"):
        cells.blank_solution("x = 2**15\nanswer_02_1 = x * 2")
    with pytest.raises(cells.ConventionError, match="no `answer_NN_k"):
        cells.blank_solution("# nothing here")


def test_blanking_keeps_a_functions_signature_and_docstring():
    source = (
        "# write the quantizer\n"
        "def answer_02_3(x, bits=8):\n"
        '    """Absmax-quantize `x`."""\n'
        "    scale = x.abs().max() / 127\n"
        "    return (x / scale).round()\n"
        "answer_02_4 = 3\n"
    )
    blank = cells.blank_solution(source)
    assert blank == (
        "# write the quantizer\n"
        "def answer_02_3(x, bits=8):\n"
        '    """Absmax-quantize `x`."""\n'
        "    ...  # your code here\n"
        "answer_02_4 = ...  # your answer here"
    )
    assert "scale" not in blank
    namespace: dict = {}
    exec(blank.replace("answer_02_4 = ...", "answer_02_4 = None"), namespace)
    assert namespace["answer_02_3"](1.0) is None  # an unanswered function returns nothing
    without_docstring = cells.blank_solution("def answer_03_1(model):\n    return model.r\n")
    assert without_docstring == "def answer_03_1(model):\n    ...  # your code here"
    with pytest.raises(cells.ConventionError, match="own lines"):
        cells.blank_solution("def answer_03_1(m): return m.r\n")
    with pytest.raises(cells.ConventionError, match="line 1"):
        cells.blank_solution("def helper(m):\n    return m.r\n")


def test_leaked_solutions_finds_answer_text_and_function_bodies_but_not_shared_text():
    chapter = new_notebook()
    chapter.cells = [
        _code("x = 40\nprint(x)", "facts"),
        _code(
            "answer_02_1 = 40  # your answer here\n"
            "answer_02_2 = [\n    0.5,\n    3.140625,\n]\n"
            "def answer_02_3(t):\n"
            '    """Absmax."""\n'
            "    # the scale first\n"
            "    scale = t.abs().max() / 127\n"
            "    return (t / scale).round()\n",
            "answer",
            ["solution"],
        ),
        _code('exercises.check("02.1", answer_02_1)', "check", ["graded"]),
    ]
    snippets = student.solution_snippets(chapter)
    assert "40" in snippets and "3.140625," in snippets and '"""Absmax."""' not in snippets
    assert "scale = t.abs().max() / 127" in snippets and "# the scale first" in snippets
    # "40" is printed by the chapter anyway: it is not counted as a leak
    everything = student.leaked_solutions(chapter, chapter)
    assert "40" not in everything
    assert {"[\n    0.5,\n    3.140625,\n]", "return (t / scale).round()"} <= set(everything)
    blank = student.student_copy(chapter)
    assert student.leaked_solutions(chapter, blank) == []
    # a solution that reaches the copy another way, e.g. in an output, is found
    leaky = copy.deepcopy(blank)
    leaky.cells[0].outputs = [
        new_output("stream", name="stdout", text="scale = t.abs().max() / 127")
    ]
    assert student.leaked_solutions(chapter, leaky) == ["scale = t.abs().max() / 127"]


def test_an_unwritten_answer_function_is_not_answered_whatever_the_check_does():
    from helpers import exercises

    def blank(model):
        """Return the LoRA config."""
        ...  # your code here

    def passes(model):
        pass

    def written(model):
        return model

    def returns_nothing_on_purpose(model):
        model.append(1)

    assert exercises.is_unwritten(blank) and exercises.is_unwritten(passes)
    assert not exercises.is_unwritten(written)
    assert not exercises.is_unwritten(returns_nothing_on_purpose)
    assert not exercises.is_unwritten(print) and not exercises.is_unwritten(3)
    # a check that uses the function's result without call_answer would raise on None
    exercises.register("99.7", "test only", lambda: 3, lambda fn, expected: fn(1) + 2 == expected)
    try:
        correct, line = exercises.verdict("99.7", blank)
        assert not correct and line.startswith("Exercise 99.7: not answered yet: write the body")
        assert exercises.verdict("99.7", lambda n: n) == (True, "Exercise 99.7: correct")
    finally:
        del exercises.EXERCISES["99.7"]


ANSWER_NAME = re.compile(r"\banswer_\d\d_\d+\b")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_cell_but_its_check_uses_an_answer(path):
    """A student copy runs top to bottom: no later cell may need a right answer."""
    nb = nbformat.read(path, as_version=4)
    users = [
        cell.id
        for cell in nb.cells
        if cell.cell_type == "code"
        and not (cells.is_solution(cell) or cells.is_graded(cell))
        and ANSWER_NAME.search(cell.source)
    ]
    assert users == [], f"cells {users} use an answer; only its check may"


def _quickest_chapter_with_exercises() -> Path:
    """Chapter 01 (the quickest to run) when it has exercises, else the first that has."""
    for path in sorted(CHAPTERS, key=lambda p: (not p.name.startswith("01_"), p.name)):
        nb = nbformat.read(path, as_version=4)
        if any(cells.is_graded(cell) for cell in nb.cells):
            return path
    pytest.skip("no chapter has exercises")


def test_a_student_copy_runs_top_to_bottom_and_every_check_says_not_answered_yet(tmp_path):
    from nbclient import NotebookClient

    chapter = _quickest_chapter_with_exercises()
    nb = student.student_copy(nbformat.read(chapter, as_version=4))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name=notebooks.KERNEL,
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    checks = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        where = cells.cell_label(nb, index)
        assert not errors, f"{chapter.name}: {where} raised {errors[0].ename}: {errors[0].evalue}"
        if cells.is_graded(cell):
            checks += 1
            printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            number = cells.exercise_id(cell)
            assert printed.startswith(f"Exercise {number}: not answered yet: "), (where, printed)
            assert printed.count("\n") == 1, printed
    assert checks >= 1
