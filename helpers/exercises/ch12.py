"""Exercises of chapter 12, tool calling.

Both ask for code, and both checks run the learner's function on cases the chapter
never shows (another tool, nested arguments, broken blocks) and compare it with the
course's own implementation in ``helpers.tool_calling``. An answer that simply calls
that implementation is refused: the point is to write it.
"""

from __future__ import annotations

import inspect
import json
import re

from . import AnswerMissing, call_answer, register

COURSE_MODULE = "helpers.tool_calling"


def uses_course_solution(function, _seen: frozenset = frozenset()) -> bool:
    """True when `function` reaches into ``helpers.tool_calling`` (by name, module or import).

    Read from the names its code (and any function nested in it) looks up, resolved in
    its globals and closure, so ``tool_calling.blocks(...)``, ``from helpers.tool_calling
    import blocks`` at the top of the notebook, or an import inside the function are all
    seen.
    """
    if not inspect.isfunction(function) or function in _seen:
        return False
    seen = _seen | {function}
    names: set[str] = set()

    def walk(code) -> None:
        names.update(code.co_names)
        for const in code.co_consts:
            if inspect.iscode(const):
                walk(const)

    walk(function.__code__)
    if any("tool_calling" in name for name in names):
        return True
    scope = dict(function.__globals__)
    if function.__closure__:
        for name, cell in zip(function.__code__.co_freevars, function.__closure__, strict=True):
            try:
                scope[name] = cell.cell_contents
            except ValueError:  # an empty cell
                continue
        names.update(function.__code__.co_freevars)
    for name in names:
        value = scope.get(name)
        module = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "")
        if module == COURSE_MODULE or (
            inspect.isfunction(value) and uses_course_solution(value, seen)
        ):
            return True
    return False


def _refuse_course_code(answer) -> None:
    if uses_course_solution(answer):
        raise AnswerMissing(
            f"your function calls the course's own implementation ({COURSE_MODULE}): "
            "write it yourself, with json and re"
        )


# ---------------------------------------------------------------- 12.1: the parser
_BLOCK = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)


def parse_blocks(text: str) -> list:
    """The reference answer to 12.1, written as a learner would (json and re only)."""
    found = []
    for match in _BLOCK.finditer(text):
        if not match.group(2):  # never closed
            found.append(None)
            continue
        try:
            value = json.loads(match.group(1))
        except json.JSONDecodeError:
            found.append(None)
            continue
        ok = (
            isinstance(value, dict)
            and isinstance(value.get("name"), str)
            and isinstance(value.get("arguments"), dict)
        )
        found.append({"name": value["name"], "arguments": value["arguments"]} if ok else None)
    return found


PARSER_CASES = [
    "The answer is 42, no tool needed.",
    '<tool_call>{"name": "plan_trip", "arguments": {"stops": [{"city": "Lyon", "nights": 2}, '
    '{"city": "Turin", "nights": 1}], "budget": {"max": 900, "currency": "EUR"}}}</tool_call>',
    'Sure.\n<tool_call>{"name": "get_stock", "arguments": {"symbol": "ACME"}}</tool_call>\n'
    '<tool_call>{"name": "get_stock", "arguments": {"symbol": "ZZZ",}}</tool_call>',
    '<tool_call>{"name": "weather", "arguments": {"town": "Graz"}}',
    '<tool_call>["weather", {"town": "Graz"}]</tool_call>',
    '<tool_call>{"arguments": {"town": "Graz"}}</tool_call>',
    '<tool_call>{"name": "ping", "arguments": "now"}</tool_call>',
    "<tool_call>{'name': 'weather', 'arguments': {'town': 'Graz'}}</tool_call>",
    '<tool_call> {"name": "note", "arguments": {"text": "a {brace} and a \\"quote\\""}} '
    "</tool_call> done",
]
"""Texts the 12.1 check parses: plain text, nested arguments, two blocks (one broken), an
unclosed block, a list, a missing name, non-object arguments, Python quotes, braces in a
string."""


def _parsed(answer) -> list:
    if not callable(answer):
        call_answer(answer)  # refused with a hint
    _refuse_course_code(answer)
    results = []
    for text in PARSER_CASES:
        got = answer(text)
        if not isinstance(got, list):
            raise AnswerMissing(
                "return a list with one entry per block (an empty list when there is none), "
                f"not {type(got).__name__}"
            )
        results.append(got)
    return results


def _same_blocks(answer, expected) -> bool:
    return _parsed(answer) == [expected(text) for text in PARSER_CASES]


def _parser_hint(answer, expected):
    for text, got in zip(PARSER_CASES, _parsed(answer), strict=True):
        want = expected(text)
        if got == want:
            continue
        if len(got) != len(want):
            return (
                f"for a text with {len(want)} <tool_call> block(s) your list has {len(got)} "
                "entries: one per block, None for a broken one (a block never closed counts)"
            )
        if any(g is not None and w is None for g, w in zip(got, want, strict=True)):
            return (
                "a broken block came back as a call: invalid JSON, a missing 'name', "
                "'arguments' that is not an object or a missing </tool_call> give None"
            )
        return (
            "a well-formed call was lost or changed: keep nested arguments whole "
            "(match up to </tool_call>, then json.loads the inside)"
        )
    return None


register(
    "12.1",
    "Write answer_12_1(text): a list with one entry per <tool_call>...</tool_call> block of "
    "text, in order: {'name': ..., 'arguments': {...}} for a well-formed call, None for a "
    "malformed one (invalid JSON, no 'name' string, 'arguments' not an object, or a block "
    "never closed). No exception, whatever the text.",
    lambda: parse_blocks,
    _same_blocks,
    hints=[_parser_hint],
    fallback_hint="re.finditer over the blocks, json.loads inside a try, check the two keys",
)


# ---------------------------------------------------------------- 12.2: schema validation
BOOKING_SCHEMA = {
    "type": "function",
    "function": {
        "name": "book_room",
        "description": "Book a meeting room.",
        "parameters": {
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["atlas", "borealis", "cosmos"]},
                "people": {"type": "integer"},
                "hours": {"type": "number"},
                "extras": {"type": "array", "items": {"type": "string"}, "nullable": True},
                "contact": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "phone": {"type": "string"}},
                    "required": ["name"],
                },
            },
            "required": ["room", "people", "contact"],
        },
    },
}
"""The tool whose arguments 12.2's check validates (written by hand: a nested object)."""

_GOOD = {"room": "atlas", "people": 4, "contact": {"name": "Ana"}}
VALIDATION_CASES = [
    (_GOOD, True),
    ({**_GOOD, "hours": 1.5, "extras": ["projector", "tea"]}, True),
    ({**_GOOD, "hours": 2}, True),  # an integer is a number
    ({**_GOOD, "extras": None}, True),  # nullable
    ({**_GOOD, "contact": {"name": "Ana", "phone": "555"}}, True),
    ({"room": "atlas", "people": 4}, False),  # contact missing
    ({**_GOOD, "room": "dungeon"}, False),  # not in the enum
    ({**_GOOD, "people": True}, False),  # a bool is not an integer
    ({**_GOOD, "people": 4.5}, False),
    ({**_GOOD, "people": "4"}, False),
    ({**_GOOD, "extras": ["tea", 3]}, False),  # an item of the wrong type
    ({**_GOOD, "contact": {"phone": "555"}}, False),  # nested required key missing
    ({**_GOOD, "contact": "Ana"}, False),
    ({**_GOOD, "floor": 3}, False),  # a key the schema does not name
]
"""(arguments, valid?) pairs for 12.2, none of which the chapter shows."""

VALIDATION_HINTS = {
    7: "True was accepted as an integer: in Python bool is a subclass of int, in JSON it is not",
    13: "an argument the schema does not name was accepted: the function would reject it",
    11: "look inside nested objects too: contact needs its own required 'name'",
    10: "check each item of an array against the schema's 'items'",
    6: "a value outside the property's 'enum' was accepted",
    5: "a required argument is missing and the call was accepted",
    3: "None was refused for 'extras': the schema marks it nullable (Optional in Python)",
    2: "an integer was refused where the schema asks for a number: 2 is a number",
}


def _verdicts(answer) -> list[bool]:
    if not callable(answer):
        call_answer(answer)  # refused with a hint
    _refuse_course_code(answer)
    verdicts = []
    for arguments, _ in VALIDATION_CASES:
        got = call_answer(answer, json.loads(json.dumps(arguments)), BOOKING_SCHEMA)
        if not isinstance(got, bool):
            raise AnswerMissing(f"return True or False, not a {type(got).__name__}")
        verdicts.append(got)
    return verdicts


def _same_verdicts(answer, expected) -> bool:
    return _verdicts(answer) == [valid for _, valid in VALIDATION_CASES]


def _validation_hint(answer, expected):
    got = _verdicts(answer)
    for index, hint in VALIDATION_HINTS.items():
        if got[index] != VALIDATION_CASES[index][1]:
            return hint
    return None


def is_valid(arguments, schema) -> bool:
    """The reference answer to 12.2, written as a learner would."""

    def ok(value, spec) -> bool:
        if value is None and spec.get("nullable"):
            return True
        kind = spec.get("type")
        types = {
            "string": str,
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "array": list,
            "object": dict,
        }
        if kind in types and (
            not isinstance(value, types[kind]) or (isinstance(value, bool) and kind != "boolean")
        ):
            return False
        if "enum" in spec and value not in spec["enum"]:
            return False
        if kind == "array" and "items" in spec:
            return all(ok(item, spec["items"]) for item in value)
        if kind == "object" and "properties" in spec:
            props = spec["properties"]
            return (
                all(k in value for k in spec.get("required", []))
                and all(k in props for k in value)
                and all(ok(v, props[k]) for k, v in value.items())
            )
        return True

    return ok(arguments, schema["function"]["parameters"])


register(
    "12.2",
    "Write answer_12_2(arguments, schema): True when the dict `arguments` fits the tool "
    "`schema` ({'type': 'function', 'function': {..., 'parameters': {...}}}): required keys "
    "present, no key the schema does not name, types right (a bool is not an integer, an "
    "integer is a number), enums respected, array items and nested objects checked, None "
    "allowed where a property is nullable. False otherwise.",
    lambda: is_valid,
    _same_verdicts,
    hints=[_validation_hint],
    fallback_hint="walk the schema: type, enum, then items (arrays) or properties (objects)",
)
