"""The exercise cell convention that instructor tools rely on.

- An answer cell is tagged ``solution`` and holds lines
  ``answer_NN_k = <the solution>  # your answer here``, or, for an exercise that asks
  for code, a function ``def answer_NN_k(...):`` whose body is the solution (the
  student copy keeps its signature and docstring and replaces the body by ``...``,
  so the unanswered function returns None and its check says "not answered yet").
- A check cell is tagged ``graded`` and is exactly
  ``exercises.check("NN.k", answer_NN_k)``; its stored output
  (``Exercise NN.k: correct`` and ``True``) is what a regrade compares.

Cells are matched between a chapter, its student copy and a submission by their
cell id, which every notebook of the course keeps.
"""

from __future__ import annotations

import ast
import re

SOLUTION = "solution"
GRADED = "graded"
PLACEHOLDER = "..."
ANSWER_NAME = re.compile(r"^answer_\d\d_\d+$")
CHECK_CALL = re.compile(r"""exercises\.check\(\s*["'](\d\d\.\d+)["']""")


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell) -> bool:
    return cell.cell_type == "code" and SOLUTION in tags(cell)


def is_graded(cell) -> bool:
    return cell.cell_type == "code" and GRADED in tags(cell)


def exercise_id(cell) -> str | None:
    """The exercise a graded cell checks ("01.2"), read from its source."""
    match = CHECK_CALL.search(cell.source)
    return match.group(1) if match else None


def cell_label(nb, index: int) -> str:
    """How a report names a cell: its id, its position (1-based) and its first line."""
    cell = nb.cells[index]
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    return f"id {cell.get('id', '?')} (cell {index + 1}: {first})"


class ConventionError(ValueError):
    """A solution cell that a student copy could not blank without leaking or breaking it."""


def blank_solution(source: str, where: str = "solution cell") -> str:
    """The source with every answer replaced by ``...``.

    An ``answer_NN_k = <expression>`` statement may span several lines (a list over
    many lines); it becomes one line ``answer_NN_k = ...  # your answer here``. A
    ``def answer_NN_k(...):`` keeps its signature (decorators included) and its
    docstring; its body becomes ``...  # your code here``. Comments and blank lines
    outside a function are kept. Any other code in a solution cell is refused: it
    could give the answer away.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ConventionError(f"{where} is not valid Python: {err}") from err
    lines = source.splitlines()
    replaced: dict[int, tuple[int, str]] = {}  # first line -> (last line, new text)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and node.targets else None
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(target, ast.Name)
            and ANSWER_NAME.match(target.id)
        ):
            indent = lines[node.lineno - 1][: node.col_offset]
            text = f"{indent}{target.id} = {PLACEHOLDER}  # your answer here"
            replaced[node.lineno - 1] = (node.end_lineno - 1, text)
        elif isinstance(node, ast.FunctionDef) and ANSWER_NAME.match(node.name):
            first_body = node.body[0]
            if first_body.lineno == node.lineno:
                raise ConventionError(
                    f"{where}: line {node.lineno}: write the body of {node.name} on its own "
                    "lines, below the `def` line, so that the student copy can blank it"
                )
            has_docstring = (
                isinstance(first_body, ast.Expr)
                and isinstance(first_body.value, ast.Constant)
                and isinstance(first_body.value.value, str)
            )
            keep_until = first_body.end_lineno if has_docstring else node.body[0].lineno - 1
            body_indent = " " * node.body[0].col_offset
            start = node.decorator_list[0].lineno - 1 if node.decorator_list else node.lineno - 1
            head = lines[start:keep_until]
            text = "\n".join([*head, f"{body_indent}{PLACEHOLDER}  # your code here"])
            replaced[start] = (node.end_lineno - 1, text)
        elif isinstance(node, ast.Pass):
            continue
        else:
            raise ConventionError(
                f"{where}: line {node.lineno} is not an `answer_NN_k = ...` line or a "
                "`def answer_NN_k(...):`; a solution cell holds only answers (and comments), "
                "or its student copy would give the solution away"
            )
    if not replaced:
        raise ConventionError(f"{where} has no `answer_NN_k = ...` line or `def answer_NN_k`")
    out, i = [], 0
    while i < len(lines):
        if i in replaced:
            last, text = replaced[i]
            out.append(text)
            i = last + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)
