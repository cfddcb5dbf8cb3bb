"""Regrade a student's submitted notebook: are its outputs genuine, are its answers right?

``python -m helpers.grading.regrade REFERENCE.ipynb SUBMISSION.ipynb [--timeout S] [--json R.json]``

REFERENCE is the chapter as the course ships it (``notebooks/NN_x.ipynb``, with
its solutions and stored verdicts); SUBMISSION is the student's notebook, made
from the student copy (``python -m helpers.grading.student``) and run by the
student. Three things are checked:

1. **Genuine outputs.** The submission is re-executed top to bottom in a fresh
   kernel, each cell with a time limit (``--timeout``, seconds per cell), and
   every code cell's fresh output is compared with the output stored in the
   submission, by the rules of strict nbval with the course's sanitize file
   (see ``compare.py``; cells tagged ``nbval-ignore-output`` are run but not
   compared). A hand-edited or stale output, a cell that raises, a cell never
   run: each fails and is named by its cell id. A cell that runs past its limit
   fails, and every cell after it is reported as not run.
2. **Right answers.** Each cell tagged ``graded`` in the reference
   (``exercises.check("NN.k", answer_NN_k)``) is found in the submission by its
   cell id; its source must be unchanged and its fresh output must equal the
   reference's stored one (``Exercise NN.k: correct``, ``True``).
3. **Structure.** Code cells of the reference that are missing from the
   submission, or that come in another order, are reported by cell id and fail;
   cells the student added, and code cells edited outside the solution cells, are
   listed for the instructor to read.

It prints a report with a score (exercises correct out of the reference's), can
write it as JSON (``--json``), and exits 0 only when everything passes (1 when
something fails, 2 when a notebook cannot be read).

**This is not a sandbox.** The separate kernel and the time limit protect the
grading from a hang, not from the student's code: that code runs with the
grader's permissions, files, network and environment variables, and can read,
change or delete anything the grader can. Regrade submissions you do not trust
inside a disposable container or virtual machine with no credentials in it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from . import cells as convention

try:
    from .compare import SANITIZE_FILE, cell_options, compare, load_sanitizers
except ModuleNotFoundError as err:
    if __name__ == "__main__":  # the command line gets the fix, not a traceback
        sys.exit(f"cannot regrade: {err}")
    raise
from .run import run_cells

DEFAULT_TIMEOUT = 600.0


@dataclass
class CellResult:
    """One code cell of the submission: status and, when it failed, why."""

    cell_id: str
    index: int  # position in the submission, 0-based
    label: str
    status: str  # match, ignored, skipped, differs, error, timeout, not run, unexecuted
    passed: bool
    detail: str = ""


@dataclass
class ExerciseResult:
    exercise: str
    cell_id: str
    status: str  # correct, wrong, missing, changed, not run
    passed: bool
    detail: str = ""


@dataclass
class Structure:
    missing: list[str] = field(default_factory=list)  # reference code cells not submitted
    moved: list[str] = field(default_factory=list)  # code cells out of the reference's order
    added: list[str] = field(default_factory=list)  # submission cells not in the reference
    edited: list[str] = field(default_factory=list)  # code cells edited outside solutions

    @property
    def passed(self) -> bool:
        return not self.missing and not self.moved


@dataclass
class Report:
    reference: str
    submission: str
    timeout: float
    seconds: float
    cells: list[CellResult]
    exercises: list[ExerciseResult]
    structure: Structure
    notes: list[str] = field(default_factory=list)

    @property
    def outputs_passed(self) -> bool:
        return all(cell.passed for cell in self.cells)

    @property
    def score(self) -> tuple[int, int]:
        return sum(e.passed for e in self.exercises), len(self.exercises)

    @property
    def passed(self) -> bool:
        correct, total = self.score
        return self.outputs_passed and correct == total and self.structure.passed

    def to_dict(self) -> dict:
        data = asdict(self)
        correct, total = self.score
        data.update(
            passed=self.passed,
            outputs_passed=self.outputs_passed,
            score={"correct": correct, "total": total},
        )
        data["structure"]["passed"] = self.structure.passed
        return data

    def failed_cells(self) -> list[CellResult]:
        return [cell for cell in self.cells if not cell.passed]

    def exercise(self, exercise_id: str) -> ExerciseResult:
        return next(e for e in self.exercises if e.exercise == exercise_id)


def _ids(nb, code_only: bool = False) -> list[str]:
    return [cell.get("id", "") for cell in nb.cells if not code_only or cell.cell_type == "code"]


def _moved(reference_order: list[str], submitted_order: list[str]) -> list[str]:
    """Ids to move to restore the reference order: those outside a longest in-order run."""
    position = {cell_id: i for i, cell_id in enumerate(reference_order)}
    seq = [position[c] for c in submitted_order if c in position]
    # longest increasing subsequence, O(n^2) is plenty for a notebook
    best = [1] * len(seq)
    prev = [-1] * len(seq)
    for i in range(len(seq)):
        for j in range(i):
            if seq[j] < seq[i] and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    keep = set()
    i = max(range(len(seq)), key=best.__getitem__) if seq else -1
    while i >= 0:
        keep.add(seq[i])
        i = prev[i]
    return [reference_order[p] for p in seq if p not in keep]


def _same_source(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def structure_of(reference, submission) -> Structure:
    ref_code = _ids(reference, code_only=True)
    sub_code = _ids(submission, code_only=True)
    ref_all = set(_ids(reference))
    sub_all = set(_ids(submission))
    ref_cells = {cell.get("id"): cell for cell in reference.cells}
    structure = Structure(
        missing=[c for c in ref_code if c not in sub_all],
        moved=_moved(ref_code, sub_code),
        added=[c for c in _ids(submission) if c not in ref_all],
    )
    for cell in submission.cells:
        ref = ref_cells.get(cell.get("id"))
        if ref is None or cell.cell_type != "code" or convention.is_solution(ref):
            continue
        if not _same_source(cell.source, ref.source):
            structure.edited.append(cell.get("id"))
    return structure


def _check_cell(nb, index: int, run, patterns) -> CellResult:
    cell = nb.cells[index]
    label = convention.cell_label(nb, index)
    result = CellResult(cell.get("id", ""), index, label, "match", True)
    options = cell_options(cell)
    if run.status == "skipped":
        result.status = "skipped"
    elif run.status != "ok":
        result.status, result.passed = run.status, False
        result.detail = run.detail
    elif cell.execution_count is None and cell.source.strip():
        result.status, result.passed = "unexecuted", False
        result.detail = (
            "the submission stores no run of this cell (execution count is empty): "
            "run the notebook top to bottom before submitting"
        )
    elif not options["check"]:
        result.status = "ignored"
    else:
        difference = compare(run.outputs, cell.outputs, patterns)
        if difference:
            result.status, result.passed = "differs", False
            result.detail = "the stored output is not what the code produces: " + difference
    return result


def _check_exercises(reference, submission, runs, patterns) -> list[ExerciseResult]:
    where = {cell.get("id"): i for i, cell in enumerate(submission.cells)}
    results = []
    for ref_cell in reference.cells:
        if not convention.is_graded(ref_cell):
            continue
        cell_id = ref_cell.get("id", "")
        exercise = convention.exercise_id(ref_cell) or cell_id
        result = ExerciseResult(exercise, cell_id, "correct", True)
        results.append(result)
        if cell_id not in where:
            result.status, result.passed = "missing", False
            result.detail = f"the check cell (id {cell_id}) is not in the submission"
            continue
        index = where[cell_id]
        cell = submission.cells[index]
        if cell.cell_type != "code" or not _same_source(cell.source, ref_cell.source):
            result.status, result.passed = "changed", False
            result.detail = f"the check cell was edited; it must stay {ref_cell.source.strip()!r}"
            continue
        run = runs[index]
        if run.status != "ok":
            result.status, result.passed = "not run", False
            result.detail = f"its check did not complete: {run.status}, {run.detail}"
            continue
        difference = compare(run.outputs, ref_cell.outputs, patterns)
        if difference:
            result.status, result.passed = "wrong", False
            said = [
                out.text.strip()
                for out in run.outputs
                if out.output_type == "stream" and out.text.strip()
            ]
            result.detail = said[0] if said else difference
    return results


def _notes(submission) -> list[str]:
    counts = [
        c.execution_count
        for c in submission.cells
        if c.cell_type == "code" and c.execution_count is not None
    ]
    if counts and counts != list(range(1, len(counts) + 1)):
        return [
            "the stored execution counts are not 1..N: the submission was not run top to "
            "bottom in one go (its outputs were still compared with a fresh run)"
        ]
    return []


def regrade(
    reference: str | Path,
    submission: str | Path,
    timeout: float = DEFAULT_TIMEOUT,
    sanitize_file: str | Path | None = SANITIZE_FILE,
) -> Report:
    """Re-execute `submission`, compare it with itself and with `reference`; return the report."""
    reference, submission = Path(reference), Path(submission)
    ref_nb = nbformat.read(reference, as_version=4)
    sub_nb = nbformat.read(submission, as_version=4)
    patterns = load_sanitizers(sanitize_file)
    start = time.monotonic()
    runs = run_cells(sub_nb, cwd=submission.resolve().parent, timeout=timeout)
    seconds = time.monotonic() - start
    cells = [_check_cell(sub_nb, i, runs[i], patterns) for i in sorted(runs)]
    return Report(
        reference=str(reference),
        submission=str(submission),
        timeout=timeout,
        seconds=round(seconds, 1),
        cells=cells,
        exercises=_check_exercises(ref_nb, sub_nb, runs, patterns),
        structure=structure_of(ref_nb, sub_nb),
        notes=_notes(sub_nb),
    )


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def format_report(report: Report) -> str:
    """The report as text, failures first named by cell id."""
    lines = [
        f"Regrade of {report.submission} against {report.reference}",
        f"(re-executed in a fresh kernel, at most {report.timeout:g} s per cell, "
        f"{report.seconds:g} s in all)",
        "",
        "Outputs (fresh run vs stored, strict nbval rules):",
    ]
    failed = report.failed_cells()
    for cell in (c for c in failed if c.status != "not run"):
        lines.append(f"  FAIL {cell.status}: {cell.label}")
        if cell.detail:
            lines.append(_indent(cell.detail))
    not_run = [c for c in failed if c.status == "not run"]
    if not_run:
        ids = ", ".join(c.cell_id for c in not_run)
        lines.append(f"  FAIL not run ({not_run[0].detail}): {len(not_run)} cell(s), ids {ids}")
    counts: dict[str, int] = {}
    for cell in report.cells:
        if cell.passed:
            counts[cell.status] = counts.get(cell.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"
    lines.append(f"  ok: {summary}")
    lines += ["", "Exercises:"]
    for ex in report.exercises:
        verdict = "ok  " if ex.passed else "FAIL"
        lines.append(
            f"  {verdict} {ex.exercise}: {ex.status}" + (f": {ex.detail}" if ex.detail else "")
        )
    if not report.exercises:
        lines.append("  (the reference has no graded cells)")
    s = report.structure
    lines += ["", "Structure (code cells matched by id):"]
    for name, ids, fails in (
        ("missing", s.missing, True),
        ("moved", s.moved, True),
        ("added by the student", s.added, False),
        ("edited outside solution cells", s.edited, False),
    ):
        if ids:
            lines.append(f"  {'FAIL' if fails else 'note'} {name}: {', '.join(ids)}")
    if not (s.missing or s.moved or s.added or s.edited):
        lines.append("  ok: same cells, same order")
    for note in report.notes:
        lines.append(f"  note: {note}")
    correct, total = report.score
    lines += [
        "",
        f"Score: {correct}/{total} exercises correct; outputs "
        f"{'genuine' if report.outputs_passed else 'NOT genuine'} "
        f"({len(report.failed_cells())} cell(s) failed)",
        f"Result: {'PASS' if report.passed else 'FAIL'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.grading.regrade",
        description=(
            "Re-execute a submitted notebook, check that its stored outputs are genuine and "
            "its exercises right. Not a sandbox: the submission's code runs with your "
            "permissions."
        ),
    )
    parser.add_argument("reference", help="the chapter as shipped (notebooks/NN_x.ipynb)")
    parser.add_argument("submission", help="the student's executed notebook")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds allowed per cell (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", metavar="REPORT", help="also write the report as JSON here")
    parser.add_argument(
        "--sanitize-with",
        default=str(SANITIZE_FILE),
        help="nbval sanitize file (default: the course's, helpers/grading/sanitize.cfg)",
    )
    args = parser.parse_args(argv)
    # The course never downloads at run time; the kernel inherits these.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        report = regrade(args.reference, args.submission, args.timeout, args.sanitize_with)
    except (OSError, ValueError) as err:  # unreadable or invalid notebook
        print(f"cannot regrade: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
