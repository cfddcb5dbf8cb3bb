"""Answers to chapter 12's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import json
import re

import pytest

import helpers.tool_calling
from helpers import tool_calling
from helpers.exercises import ch12
from helpers.tool_calling import blocks, validate_arguments


# ---------------------------------------------------------------- 12.1
def _split_parser(text):
    """Another right answer: str.split instead of a regular expression."""
    found = []
    for piece in text.split("<tool_call>")[1:]:
        if "</tool_call>" not in piece:
            found.append(None)
            continue
        try:
            value = json.loads(piece.split("</tool_call>")[0])
        except ValueError:
            found.append(None)
            continue
        good = isinstance(value, dict) and isinstance(value.get("name"), str)
        good = good and isinstance(value.get("arguments"), dict)
        found.append({"name": value["name"], "arguments": value["arguments"]} if good else None)
    return found


def _raises_on_bad_json(text):
    return [json.loads(m) for m in re.findall(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL)]


def _drops_broken_blocks(text):
    return [c for c in _split_parser(text) if c is not None]


def _lazy_braces(text):
    """A regex that stops at the first closing brace: nested arguments are cut."""
    found = []
    for body in re.findall(r"<tool_call>(\{.*?\})", text, re.DOTALL):
        try:
            value = json.loads(body + "}")
            found.append({"name": value["name"], "arguments": value["arguments"]})
        except (ValueError, KeyError, TypeError):
            found.append(None)
    return found


def _keeps_unclosed(text):
    found = []
    for body in re.findall(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.DOTALL):
        try:
            value = json.loads(body)
        except ValueError:
            found.append(None)
            continue
        ok = isinstance(value, dict) and isinstance(value.get("arguments"), dict)
        found.append(value if ok and isinstance(value.get("name"), str) else None)
    return found


def _no_key_check(text):
    found = []
    for body in re.findall(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL):
        try:
            found.append(json.loads(body))
        except ValueError:
            found.append(None)
    if "<tool_call>" in text and "</tool_call>" not in text.split("<tool_call>")[-1]:
        found.append(None)
    return found


def _calls_the_course(text):
    return blocks(text)


def _calls_the_course_module(text):
    return tool_calling.blocks(text)


def _calls_through_the_package(text):
    return helpers.tool_calling.blocks(text)


def _imports_the_course(text):
    from helpers.tool_calling import parse_tool_calls

    parsed = parse_tool_calls(text)
    return parsed.calls + [None] * parsed.malformed


# ---------------------------------------------------------------- 12.2
def _recursive(arguments, schema):
    types = {"string": str, "integer": int, "number": (int, float), "array": list, "object": dict}

    def fits(value, spec):
        if value is None:
            return bool(spec.get("nullable"))
        kind = spec.get("type")
        if isinstance(value, bool) or not isinstance(value, types.get(kind, object)):
            return kind == "boolean" and isinstance(value, bool)
        if value not in spec.get("enum", [value]):
            return False
        if kind == "array":
            return all(fits(v, spec.get("items", {})) for v in value)
        if kind == "object":
            props = spec.get("properties", {})
            return set(spec.get("required", [])) <= set(value) <= set(props) and all(
                fits(v, props[k]) for k, v in value.items()
            )
        return True

    return fits(arguments, schema["function"]["parameters"])


def _with_jsonschema(arguments, schema):
    jsonschema = pytest.importorskip("jsonschema")

    def strict(spec):
        spec = dict(spec)
        if spec.pop("nullable", False):
            spec["type"] = [spec["type"], "null"]
        if "properties" in spec:
            spec["properties"] = {k: strict(v) for k, v in spec["properties"].items()}
            spec["additionalProperties"] = False
        if "items" in spec:
            spec["items"] = strict(spec["items"])
        return spec

    return jsonschema.Draft202012Validator(strict(schema["function"]["parameters"])).is_valid(
        arguments
    )


def _bool_is_int(arguments, schema):
    if arguments.get("people") is True:
        return True
    return ch12.is_valid(arguments, schema)


def _extra_keys_allowed(arguments, schema):
    params = schema["function"]["parameters"]
    return ch12.is_valid({k: v for k, v in arguments.items() if k in params["properties"]}, schema)


def _flat_only(arguments, schema):
    params = schema["function"]["parameters"]
    if not all(k in arguments for k in params["required"]):
        return False
    names = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list}
    for key, value in arguments.items():
        spec = params["properties"].get(key)
        if spec is None or isinstance(value, bool):
            return False
        if value is None:
            continue
        if not isinstance(value, names[spec["type"]]) or value not in spec.get("enum", [value]):
            return False
    return True


def _no_null(arguments, schema):
    if any(v is None for v in arguments.values()):
        return False
    return ch12.is_valid(arguments, schema)


def _validates_with_the_course(arguments, schema):
    return not validate_arguments(arguments, schema)


RIGHT = {
    "12.1": [_split_parser, ch12.parse_blocks],
    "12.2": [_recursive, _with_jsonschema],
}

WRONG = {
    "12.1": [
        (_raises_on_bad_json, "your answer raised"),
        (_drops_broken_blocks, "one per block"),
        (_lazy_braces, "nested arguments"),
        (_keeps_unclosed, "a broken block came back as a call"),
        (_no_key_check, "a broken block came back as a call"),
        (_calls_the_course, "course's own implementation"),
        (_calls_the_course_module, "course's own implementation"),
        (_calls_through_the_package, "course's own implementation"),
        (_imports_the_course, "course's own implementation"),
        ("<tool_call>", "asks for a function"),
    ],
    "12.2": [
        (_bool_is_int, "bool is a subclass of int"),
        (_extra_keys_allowed, "does not name was accepted"),
        (_flat_only, "nested objects"),
        (_no_null, "nullable"),
        (_validates_with_the_course, "course's own implementation"),
        (True, "asks for a function"),
    ],
}


def test_the_reference_answers_agree_with_the_course_module():
    for text in ch12.PARSER_CASES:
        assert ch12.parse_blocks(text) == tool_calling.blocks(text)
    for arguments, valid in ch12.VALIDATION_CASES:
        assert ch12.is_valid(arguments, ch12.BOOKING_SCHEMA) is valid
        assert (not validate_arguments(arguments, ch12.BOOKING_SCHEMA)) is valid


def test_the_checks_use_cases_the_chapter_does_not_show():
    from helpers.data import tool_calls

    names = {f.__name__ for f in tool_calls.FUNCTIONS.values()}
    assert not any(name in text for text in ch12.PARSER_CASES for name in names)
    assert ch12.BOOKING_SCHEMA["function"]["name"] not in names


def test_the_solutions_do_not_count_as_calling_the_course():
    assert not ch12.uses_course_solution(ch12.parse_blocks)
    assert not ch12.uses_course_solution(ch12.is_valid)
    assert ch12.uses_course_solution(_imports_the_course)
