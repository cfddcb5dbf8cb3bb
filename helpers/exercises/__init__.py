"""Exercise checks for every chapter: ``helpers.exercises.check("01.1", answer)``.

Each exercise is registered here once, with its expected answer *computed* (from
``torch.finfo``, a parameter count, ...) rather than typed in, a comparison with a
tolerance where one makes sense, and hints for the usual wrong answers. ``check``
prints one line that depends only on the answer, never on the machine:

    Exercise 01.1: correct
    Exercise 01.1: not yet: <a hint that does not give the answer away>

so a re-executed notebook stores the same verdict everywhere (nbval compares it),
and an instructor's re-run shows whether a student's answers are right.

Adding a chapter's exercises: write ``helpers/exercises/chNN.py`` that calls
``register`` with a ``number``, ``one_of`` or ``same_set`` comparison (or your own
function). Every ``ch*.py`` module in this package is imported at the end of this
file, so a new chapter needs no other edit; its right and wrong answers go in
``tests/test_exercises_chNN.py`` (``RIGHT`` and ``WRONG``).
"""

from __future__ import annotations

import dis
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Hint = Callable[[Any, Any], "str | None"]
"""A hint rule: (answer, expected) -> a hint when the rule recognises the mistake, else None."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: how to compute its answer, how to compare, what to say when wrong."""

    id: str
    question: str
    solution: Callable[[], Any]  # computed when first needed, so importing stays cheap
    compare: Callable[[Any, Any], bool]
    hints: tuple[Hint, ...] = ()
    fallback_hint: str = "check your reasoning and try again"


EXERCISES: dict[str, Exercise] = {}


class AnswerMissing(Exception):
    """The answer cannot be compared at all (blank, wrong type); the message says why."""


class NotAnswered(AnswerMissing):
    """The learner has not written the answer yet (a function whose body is still ``...``)."""


_BOOKKEEPING = {"RESUME", "NOP", "CACHE", "EXTENDED_ARG", "MAKE_CELL", "COPY_FREE_VARS"}


def is_unwritten(function: Any) -> bool:
    """True for a function whose body does nothing (``...``, ``pass``, a docstring only).

    That is the student copy of a code exercise before the learner writes it. Decided
    from the bytecode, so the verdict is "not answered yet" whatever the check does
    with the function (a check that passes its result on would otherwise raise).
    """
    if not inspect.isfunction(function):
        return False
    code = [
        (op.opname, op.argval)
        for op in dis.get_instructions(function)
        if op.opname not in _BOOKKEEPING
    ]
    return code in (
        [("LOAD_CONST", None), ("RETURN_VALUE", None)],  # Python 3.10, 3.11
        [("RETURN_CONST", None)],  # Python 3.12+
    )


def call_answer(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a learner's function inside a check.

    An exercise that asks for code gets ``def answer_NN_k(...)``; in the student copy its
    body is ``...``, so it returns None: that is reported as "not answered yet", not as a
    wrong answer. Anything that is not a function is refused with a hint.
    """
    if not callable(function):
        raise AnswerMissing(
            f"this exercise asks for a function (def ...), got {type(function).__name__}"
        )
    result = function(*args, **kwargs)
    if result is None or result is Ellipsis:
        raise NotAnswered(
            "write the body of the function (it returns nothing yet) and run the cell"
        )
    return result


def _code_objects(answer: Any) -> list[Any]:
    """The code objects of a function, a class's methods, and every function nested in them."""
    roots = []
    if inspect.isclass(answer):
        for member in vars(answer).values():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            if inspect.isfunction(member):
                roots.append(member.__code__)
    elif inspect.isfunction(answer):
        roots.append(answer.__code__)
    found, stack = [], list(roots)
    while stack:
        code = stack.pop()
        found.append(code)
        stack.extend(c for c in code.co_consts if inspect.iscode(c))
    return found


def _globals_of(answer: Any) -> dict[str, Any]:
    if inspect.isclass(answer):
        module = inspect.getmodule(answer)
        return vars(module) if module else {}
    return getattr(answer, "__globals__", {})


def course_calls(answer: Any, course: Iterable[Callable]) -> list[str]:
    """The course functions in `course` that `answer` is, or names in its code.

    Read from the bytecode (names a function loads, imports or calls as an attribute, in
    nested functions and a class's methods too), so it also sees ``helpers.lora_config(...)``
    and ``from helpers.causal_lm import group_texts`` inside the function.
    """
    course = list(course)
    by_name = {f.__name__: f for f in course}
    used: dict[str, Callable] = {}
    if any(answer is f for f in course):
        used[answer.__name__] = answer
    namespace = _globals_of(answer)
    for code in _code_objects(answer):
        for name in code.co_names:
            value = namespace.get(name)
            hit = next((f for f in course if value is f), None) or by_name.get(name)
            if hit is not None:
                used[hit.__name__] = hit
    for cell in getattr(answer, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        hit = next((f for f in course if value is f), None)
        if hit is not None:
            used[hit.__name__] = hit
    return [f"{f.__module__}.{f.__qualname__}" for f in used.values()]


def refuse_course_solution(answer: Any, *course: Callable, registered: Any = None) -> None:
    """Raise AnswerMissing when `answer` is, or calls, one of the course's own solutions.

    For exercises that say "write it yourself": handing in ``helpers.lora_config`` (or a
    function that returns its result) proves nothing about the learner's code. The
    exercise's `registered` solution itself (the instructors' reference) is let through,
    but a function that calls it is refused like the others.
    """
    if registered is not None:
        if answer is registered:
            return
        course = (*course, registered)
    used = course_calls(answer, course)
    if used:
        raise AnswerMissing(
            f"write it yourself: your answer uses the course's own {', '.join(used)}; "
            "this exercise is about writing that code"
        )


def names_used(answer: Any) -> set[str]:
    """Every global, attribute and imported name that `answer`'s code refers to."""
    return {name for code in _code_objects(answer) for name in code.co_names}


def keywords_set(answer: Any) -> set[str]:
    """The keyword-argument names that `answer`'s code passes in its calls (from the bytecode).

    How a check tells ``SFTConfig(..., activation_checkpointing=True)`` from trl's default.
    """
    names: set[str] = set()
    for code in _code_objects(answer):
        for const in code.co_consts:
            if isinstance(const, tuple) and all(isinstance(c, str) for c in const):
                names.update(const)
            elif isinstance(const, str) and const.isidentifier():
                names.add(const)  # a dict literal's key, e.g. dict(**{"name": value})
    return names


def register(
    exercise_id: str,
    question: str,
    solution: Callable[[], Any],
    compare: Callable[[Any, Any], bool],
    *,
    hints: Sequence[Hint] = (),
    fallback_hint: str = "check your reasoning and try again",
) -> Exercise:
    """Add an exercise to the registry (ids are "chapter.number", e.g. "01.2")."""
    if exercise_id in EXERCISES:
        raise ValueError(f"exercise {exercise_id!r} is registered twice")
    exercise = Exercise(exercise_id, question, solution, compare, tuple(hints), fallback_hint)
    EXERCISES[exercise_id] = exercise
    return exercise


def solution(exercise_id: str) -> Any:
    """The expected answer (for instructors and tests; learners should try first)."""
    return _get(exercise_id).solution()


def verdict(exercise_id: str, answer: Any) -> tuple[bool, str]:
    """(correct, the one-line verdict) without printing it."""
    exercise = _get(exercise_id)
    prefix = f"Exercise {exercise_id}"
    if answer is None or answer is Ellipsis:
        return (
            False,
            f"{prefix}: not answered yet: replace the ... with your answer and run the cell",
        )
    if is_unwritten(answer):
        return (
            False,
            f"{prefix}: not answered yet: write the body of the function (it is still ...) "
            "and run the cell",
        )
    expected = exercise.solution()
    try:
        if exercise.compare(answer, expected):
            return True, f"{prefix}: correct"
    except NotAnswered as why:
        return False, f"{prefix}: not answered yet: {why}"
    except AnswerMissing as why:
        return False, f"{prefix}: not yet: {why}"
    except Exception as err:  # the learner's code raised inside the check
        return False, f"{prefix}: not yet: your answer raised {type(err).__name__}: {err}"
    for rule in exercise.hints:
        try:
            hint = rule(answer, expected)
        except AnswerMissing:
            hint = None
        if hint:
            return False, f"{prefix}: not yet: {hint}"
    return False, f"{prefix}: not yet: {exercise.fallback_hint}"


def check(exercise_id: str, answer: Any) -> bool:
    """Print whether `answer` is right (one stable line) and return True or False."""
    correct, line = verdict(exercise_id, answer)
    print(line)
    return correct


def _get(exercise_id: str) -> Exercise:
    if exercise_id not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise KeyError(f"No exercise {exercise_id!r}. Known exercises: {known}")
    return EXERCISES[exercise_id]


# --- comparisons ---------------------------------------------------------------------------


def as_number(answer: Any) -> float:
    """A real number from an int, float, numpy scalar or one-element tensor; else AnswerMissing."""
    if isinstance(answer, bool):
        raise AnswerMissing("give a number, not True/False")
    if isinstance(answer, str):
        raise AnswerMissing("give a number, not a string (no quotes)")
    if hasattr(answer, "item"):  # numpy scalar or array, torch tensor
        try:
            answer = answer.item()
        except (ValueError, RuntimeError) as err:
            raise AnswerMissing("give a single number") from err
    try:
        return float(answer)
    except (TypeError, ValueError) as err:
        raise AnswerMissing(f"give a single number, not a {type(answer).__name__}") from err


def number(rel_tol: float = 0.0, abs_tol: float = 0.0) -> Callable[[Any, Any], bool]:
    """Compare as numbers: equal within `rel_tol` (relative) or `abs_tol` (absolute)."""

    def compare(answer, expected):
        value = as_number(answer)
        if math.isinf(expected) or math.isinf(value):
            return value == expected
        return math.isclose(value, float(expected), rel_tol=rel_tol, abs_tol=abs_tol)

    return compare


def same_set(answer: Any, expected: Iterable) -> bool:
    """Compare as sets of numbers: order and repeats do not matter."""
    if isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
        raise AnswerMissing("give a list of numbers, e.g. [1.0, 2.0]")
    return {as_number(a) for a in answer} == {float(e) for e in expected}


def one_of(choices: Iterable[str]) -> Callable[[Any, Any], bool]:
    """Compare a word from a fixed list of choices, ignoring case and surrounding spaces."""
    allowed = tuple(choices)

    def compare(answer, expected):
        if not isinstance(answer, str) or answer.strip().lower() not in allowed:
            raise AnswerMissing(f"answer with one of: {', '.join(repr(c) for c in allowed)}")
        return answer.strip().lower() == expected

    return compare


def near_ratio(ratio: float, hint: str, rel_tol: float = 0.02) -> Hint:
    """A hint rule: fires when answer / expected is about `ratio` (a factor-sized mistake)."""

    def rule(answer, expected):
        value = as_number(answer)
        return hint if math.isclose(value, float(expected) * ratio, rel_tol=rel_tol) else None

    return rule


def near_value(value: float, hint: str, rel_tol: float = 1e-9) -> Hint:
    """A hint rule: fires when the answer is about `value` (a known wrong answer)."""

    def rule(answer, expected):
        got = as_number(answer)
        if math.isinf(value) or math.isinf(got):
            return hint if got == value else None
        return hint if math.isclose(got, value, rel_tol=rel_tol) else None

    return rule


def _register_all_chapters() -> None:
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module.startswith("ch"):
            importlib.import_module(f"{__name__}.{module}")


_register_all_chapters()
