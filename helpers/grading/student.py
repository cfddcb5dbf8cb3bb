"""Make the student copy of a chapter: solutions blanked, checks kept, ids kept.

``python -m helpers.grading.student notebooks/01_hardware_and_numbers.ipynb student/01.ipynb``

In every cell tagged ``solution``, each ``answer_NN_k = <solution>`` statement
becomes ``answer_NN_k = ...  # your answer here`` and each ``def answer_NN_k(...)``
keeps its signature and docstring over a body of ``...``; the outputs and execution counts
of the solution and ``graded`` cells are cleared (the stored verdicts would give
the answers away); everything else, cell ids included, is kept as it is, so the
chapter and its student copy match cell by cell (``helpers.grading.regrade``
matches a submission with the chapter by cell id).

Learners get these copies, never the chapters: ``colab/`` is generated from them
(``tools.colab``) and ``make lab`` opens working copies made from them
(``tools.workspace``). Run unanswered, every check says "not answered yet".

``leaked_solutions(reference, copy)`` lists the solution text that a copy still shows;
the tests run it on every learner copy (``colab/``, the ``make lab`` working copies).
"""

from __future__ import annotations

import argparse
import ast
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


def solution_snippets(nb) -> list[str]:
    """The solution text of a chapter's solution cells, as pieces to search for.

    For ``answer_NN_k = <expression>``: the expression, and each of its lines. For
    ``def answer_NN_k(...)``: each line of its body below the docstring (comments too).
    """
    snippets: list[str] = []
    for cell in nb.cells:
        if not cells.is_solution(cell):
            continue
        tree = ast.parse(cell.source)
        lines = cell.source.splitlines()
        for node in tree.body:
            if isinstance(node, ast.Assign) and cells.ANSWER_NAME.match(
                getattr(node.targets[0], "id", "")
            ):
                text = ast.get_source_segment(cell.source, node.value) or ""
                snippets += [text, *text.splitlines()]
            elif isinstance(node, ast.FunctionDef) and cells.ANSWER_NAME.match(node.name):
                body = node.body
                first = body[0]
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    start = first.end_lineno  # below the docstring (0-based: next line)
                else:
                    start = first.lineno - 1
                snippets += lines[start : node.end_lineno]
    unique = dict.fromkeys(s.strip() for s in snippets)
    return [s for s in unique if s and s != cells.PLACEHOLDER]


def _shown_text(cell) -> str:
    """What a cell shows: its source and the text of its outputs."""
    parts = [cell.source]
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts += [out.get("evalue", ""), *out.get("traceback", [])]
        for mime, data in out.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                parts.append(data if isinstance(data, str) else str(data))
    return "\n".join(parts)


def leaked_solutions(reference, learner_copy) -> list[str]:
    """The solution snippets of `reference` that `learner_copy` shows, in sources or outputs.

    Only the copy's cells that the reference also has (same id) are searched, so a
    Colab copy's install cell does not count. A snippet the reference shows outside
    its solution cells anyway (a short number printed elsewhere, a call the chapter
    makes in the open) is no leak and is not reported.
    """
    ids = {cell.get("id") for cell in reference.cells}
    elsewhere = "\n".join(
        _shown_text(cell) for cell in reference.cells if not cells.is_solution(cell)
    )
    shown = "\n".join(_shown_text(cell) for cell in learner_copy.cells if cell.get("id") in ids)
    return [s for s in solution_snippets(reference) if s in shown and s not in elsewhere]


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
