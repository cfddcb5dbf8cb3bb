"""Make the student copy of a chapter: solutions blanked, checks kept, ids kept.

``python -m helpers.grading.student notebooks/01_hardware_and_numbers.ipynb student/01.ipynb``

In every cell tagged ``solution``, each ``answer_NN_k = <solution>`` statement
becomes ``answer_NN_k = ...  # your answer here``; the outputs and execution counts
of the solution and ``graded`` cells are cleared (the stored verdicts would give
the answers away); everything else, cell ids included, is kept as it is, so the
chapter and its student copy match cell by cell (``helpers.grading.regrade``
matches a submission with the chapter by cell id).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

from . import cells


def student_copy(nb):
    """A new notebook: `nb` with its solutions blanked and their verdicts cleared."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        if cells.is_solution(cell):
            where = f"solution cell {cells.cell_label(nb, index)}"
            cell.source = cells.blank_solution(cell.source, where)
        if cells.is_solution(cell) or cells.is_graded(cell):
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    return student


def write_student_copy(source: str | Path, target: str | Path) -> Path:
    """Read a chapter, write its student copy; return the target path."""
    nb = nbformat.read(Path(source), as_version=4)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_copy(nb), target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.grading.student",
        description="Write the student copy of a chapter (solutions replaced by ...).",
    )
    parser.add_argument("chapter", help="a chapter notebook, e.g. notebooks/01_x.ipynb")
    parser.add_argument("output", help="where to write the student copy (.ipynb)")
    args = parser.parse_args(argv)
    try:
        path = write_student_copy(args.chapter, args.output)
    except cells.ConventionError as err:
        print(f"{args.chapter}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
