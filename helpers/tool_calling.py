"""Tool calling for SmolLM2: a chat template that knows tools, a parser, a validator, scores.

SmolLM2-135M-Instruct's own chat template is a bare ChatML loop over
``message["content"]``: ``apply_chat_template(..., tools=[...])`` drops the tools without
a word, an assistant turn that holds only ``tool_calls`` fails to render, and it has no
``{% generation %}`` markers, so trl's ``assistant_only_loss=True`` finds no assistant
token. ``TOOL_TEMPLATE`` is the course's ChatML template that fixes all three:

* the system message lists each tool as one compact signature line, built from its JSON
  schema (name, parameters with their type or allowed values, ``?`` for an optional one,
  description), then says how to call one; the full schema costs about three times the
  tokens, and every token of the system message is paid for in every example;
* an assistant call is written ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  (plain text, no new special tokens), a ``tool`` message carries a result;
* ``{% generation %}`` / ``{% endgeneration %}`` wrap what the assistant writes, its
  ``<|im_end|>`` included, so the model learns to stop;
* without tools it renders exactly what SmolLM2's own template renders.

The rest of the chapter's machinery: ``parse_tool_calls`` (malformed JSON and unknown tools
are counted, never raised), ``validate_arguments`` (a JSON-schema subset: types, required,
enums, arrays, no unexpected keys), ``assistant_mask`` (the loss mask written by hand,
from the rendered text), ``score`` and ``confusion`` (before/after rates with Wilson 95%
intervals) and ``run_calls`` (the loop closed).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .data.tool_calls import FUNCTIONS, run_call, tool_schemas
from .generation import decode_batches
from .metrics import Rate

TOOL_TEMPLATE = """\
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system = messages[0]['content'] -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' -%}
    {%- set turns = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system -}}
{%- if tools -%}
    {{- '\\n\\nYou can call these tools:' -}}
    {%- for tool in tools -%}
        {%- set f = tool['function'] if tool['function'] is defined else tool -%}
        {%- set ns = namespace(params=[]) -%}
        {%- for name, spec in f['parameters']['properties'].items() -%}
            {%- set kind = spec['type'] if spec['type'] is string else spec['type'] | join('|') -%}
            {%- if spec['enum'] is defined -%}
                {%- set kind = spec['enum'] | join('|') -%}
            {%- endif -%}
            {%- if kind == 'array' and spec['items'] is defined -%}
                {%- set kind = 'list[' + spec['items']['type'] + ']' -%}
            {%- endif -%}
            {%- set optional = '' if name in f['parameters'].get('required', []) else '?' -%}
            {%- set ns.params = ns.params + [name + optional + ': ' + kind] -%}
        {%- endfor -%}
        {{- '\\n' + f['name'] + '(' + ns.params | join(', ') + '): ' + f['description'] -}}
    {%- endfor -%}
    {{- '\\nCall a tool with <tool_call>{"name": ..., "arguments": {...}}</tool_call>'
        + ' or, if none fits, answer in plain text.' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in turns -%}
    {%- if message['role'] == 'assistant' -%}
        {{- '<|im_start|>assistant\\n' -}}
        {%- generation -%}
        {{- message['content'] or '' -}}
        {%- for call in message['tool_calls'] or [] -%}
            {%- set fn = call['function'] if call['function'] is defined else call -%}
            {%- set args = fn['arguments'] if fn['arguments'] is string
                else fn['arguments'] | tojson -%}
            {{- '\\n' if (message['content'] or not loop.first) else '' -}}
            {{- '<tool_call>{"name": ' + fn['name'] | tojson + ', "arguments": ' + args
                + '}</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>' -}}
        {%- endgeneration -%}
        {{- '\\n' -}}
    {%- else -%}
        {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""
"""The course's tool-calling ChatML template (Jinja), shown in chapter 12."""

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_ASSISTANT = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>)", re.DOTALL)


def with_tool_template(tokenizer):
    """A copy of `tokenizer` whose chat template is ``TOOL_TEMPLATE`` (same vocabulary)."""
    other = copy.deepcopy(tokenizer)
    other.chat_template = TOOL_TEMPLATE
    return other


def render(tokenizer, messages: list[dict], tools: list[dict] | None = None, **kwargs) -> str:
    """The conversation as text, through the tokenizer's chat template."""
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)


# ------------------------------------------------------------------ parsing
@dataclass
class Parsed:
    """What a generated answer holds: well-formed calls, and the blocks that were not."""

    calls: list[dict] = field(default_factory=list)  # {"name", "arguments"}, known tools only
    malformed: int = 0  # blocks whose JSON is broken or lacks "name"/"arguments"
    unknown: list[str] = field(default_factory=list)  # names of tools that do not exist
    text: str = ""  # what is left outside the blocks

    @property
    def blocks(self) -> int:
        return len(self.calls) + self.malformed + len(self.unknown)


def _call_from_json(body: str) -> dict | None:
    """{"name", "arguments"} from a block's JSON, or None when it is not a well-formed call.

    Both keys are required: "name" a string, "arguments" an object (or, OpenAI's shape, a
    JSON string holding one).
    """
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": value["name"], "arguments": arguments}


def blocks(text: str) -> list[dict | None]:
    """One entry per ``<tool_call>`` block of `text`: the call, or None when it is malformed.

    A block runs from ``<tool_call>`` to the next ``</tool_call>``; one that is never
    closed (the model stopped, or ran out of tokens) runs to the end and is malformed.
    """
    found = []
    for match in _BLOCK.finditer(text):
        closed = match.group(0).endswith(CALL_CLOSE)
        found.append(_call_from_json(match.group(1).strip()) if closed else None)
    return found


def parse_tool_calls(text: str, tools: Sequence[str] | None = None) -> Parsed:
    """The calls in `text`; malformed blocks and unknown tools are counted, never raised.

    `tools`: the names that exist (default: the chapter's three); a call to any other
    name is listed in ``unknown``.
    """
    known = set(FUNCTIONS if tools is None else tools)
    parsed = Parsed(text=_BLOCK.sub("", text).strip())
    for call in blocks(text):
        if call is None:
            parsed.malformed += 1
        elif call["name"] not in known:
            parsed.unknown.append(call["name"])
        else:
            parsed.calls.append(call)
    return parsed


# ------------------------------------------------------------------ validation
_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def _type_ok(value, kind: str) -> bool:
    if kind not in _TYPES:
        return True  # a type this subset does not know is not checked
    if isinstance(value, bool) and kind != "boolean":
        return False  # True is an int in Python, not an integer in JSON
    if kind == "number" and isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, _TYPES[kind])


def _problems(value, schema: dict, where: str) -> list[str]:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if schema.get("nullable") and value is None:
        return []
    if kinds and not any(_type_ok(value, k) for k in kinds):
        return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    problems = []
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _problems(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict) and "properties" in schema:
        problems += _object_problems(value, schema, where)
    return problems


def _object_problems(value: dict, schema: dict, where: str) -> list[str]:
    properties = schema.get("properties", {})
    problems = [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
    if schema.get("additionalProperties", False) is False:
        problems += [f"{where}: unexpected {k!r}" for k in value if k not in properties]
    for key, item in value.items():
        if key in properties:
            problems += _problems(item, properties[key], f"{where}.{key}")
    return problems


def validate_arguments(arguments: dict, schema: dict) -> list[str]:
    """What is wrong with a call's `arguments` for a tool's JSON `schema` (empty: valid).

    `schema` is a tool (``{"type": "function", "function": {...}}``), a function's schema
    or its ``parameters``. A subset of JSON Schema: types (``bool`` is not an integer),
    required keys, enums, array items, nested objects; keys the schema does not name are
    refused unless it sets ``additionalProperties``, since a function would reject them.
    """
    schema = schema.get("function", schema)
    schema = schema.get("parameters", schema)
    if not isinstance(arguments, dict):
        return [f"arguments: expected object, got {type(arguments).__name__}"]
    return _object_problems(arguments, schema, "arguments")


def schemas_by_name(tools: Sequence[dict] | None = None) -> dict[str, dict]:
    tools = tool_schemas() if tools is None else tools
    return {t.get("function", t)["name"]: t for t in tools}


# ------------------------------------------------------------------ the loss mask
def assistant_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of what the assistant wrote (its turn after the header, to <|im_end|>)."""
    return [m.span(1) for m in _ASSISTANT.finditer(text)]


def assistant_mask(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """(token ids, mask): 1 for each token inside an assistant span of the rendered `text`.

    Written by hand from the text, without the template's generation markers: the same
    tokens that ``return_assistant_tokens_mask=True`` (and trl's ``assistant_only_loss``)
    select, which ``tests/test_tool_calling.py`` and chapter 12 check.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = assistant_spans(text)
    mask = [int(any(start <= a < end for start, end in spans)) for a, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


# ------------------------------------------------------------------ scoring
def canonical(calls: Sequence[dict]) -> list[str]:
    """Calls as sorted JSON strings, numbers compared by value (5 == 5.0), order ignored."""

    def plain(value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return sorted(
        json.dumps({"name": c["name"], "arguments": plain(c["arguments"])}, sort_keys=True)
        for c in calls
    )


METRICS = {
    "valid_call": "valid call (parses, known tool, arguments fit the schema)",
    "tool_name": "right tool name(s)",
    "exact_arguments": "exact calls (names and arguments)",
    "plain_text": "plain text when no tool fits",
    "false_call": "false calls when no tool fits",
}


@dataclass
class Scores:
    """Per-example hits (1/0) of each metric; call metrics on rows that need a call."""

    hits: dict[str, list[int]]
    parsed: list[Parsed]

    def rate(self, metric: str) -> Rate:
        return Rate(sum(self.hits[metric]), len(self.hits[metric]))

    def __str__(self) -> str:
        return "\n".join(f"{METRICS[m]:<58} {self.rate(m)}" for m in METRICS)


def score(answers: Sequence[str], rows: Sequence[dict], tools: Sequence[dict] | None = None):
    """Score generated `answers` against the reference calls of `rows` (``calls`` column).

    Rows that need a call count towards the valid-call rate, tool-name accuracy (the
    multiset of names) and exact match (names and arguments, order ignored); rows that
    need none towards the plain-text rate and false calls (any ``<tool_call>`` written).
    """
    schemas = schemas_by_name(tools)
    hits: dict[str, list[int]] = {m: [] for m in METRICS}
    parsed_all = []
    for answer, row in zip(answers, rows, strict=True):
        expected = _calls_of(row)
        parsed = parse_tool_calls(answer, schemas)
        parsed_all.append(parsed)
        if expected:
            valid = (
                parsed.blocks > 0
                and parsed.malformed == 0
                and not parsed.unknown
                and all(
                    not validate_arguments(c["arguments"], schemas[c["name"]]) for c in parsed.calls
                )
            )
            names = sorted(c["name"] for c in parsed.calls) == sorted(c["name"] for c in expected)
            hits["valid_call"].append(int(valid))
            hits["tool_name"].append(int(names and parsed.blocks == len(parsed.calls)))
            hits["exact_arguments"].append(int(canonical(parsed.calls) == canonical(expected)))
        else:
            wrote_call = CALL_OPEN in answer
            hits["plain_text"].append(int(not wrote_call and bool(answer.strip())))
            hits["false_call"].append(int(wrote_call))
    return Scores(hits, parsed_all)


def _calls_of(row: dict) -> list[dict]:
    calls = row["calls"]
    return json.loads(calls) if isinstance(calls, str) else list(calls)


NO_TOOL, MALFORMED, UNKNOWN = "(no tool)", "(malformed)", "(unknown)"


def first_tool(answer: str) -> str:
    """The tool a generated answer calls first, or what it did instead."""
    found = blocks(answer)
    if not found:
        return NO_TOOL
    if found[0] is None:
        return MALFORMED
    return found[0]["name"] if found[0]["name"] in FUNCTIONS else UNKNOWN


def confusion(answers: Sequence[str], rows: Sequence[dict]) -> dict[str, Counter]:
    """{expected first tool: Counter(chosen first tool)} over the rows."""
    table: dict[str, Counter] = {name: Counter() for name in [*FUNCTIONS, NO_TOOL]}
    for answer, row in zip(answers, rows, strict=True):
        expected = _calls_of(row)
        wanted = expected[0]["name"] if expected else NO_TOOL
        table[wanted][first_tool(answer)] += 1
    return table


def format_confusion(table: dict[str, Counter]) -> str:
    """The confusion table as text: one row per expected tool, one column per choice."""
    columns = [*FUNCTIONS, NO_TOOL, MALFORMED, UNKNOWN]
    width = max(len(c) for c in columns) + 1
    lines = ["expected \\ chose".ljust(16) + "".join(c.rjust(width) for c in columns)]
    for wanted, counts in table.items():
        lines.append(wanted.ljust(16) + "".join(str(counts[c]).rjust(width) for c in columns))
    return "\n".join(lines)


# ------------------------------------------------------------------ generating and running
def prompts(tokenizer, rows: Sequence[dict], tools: Sequence[dict]) -> list[str]:
    """Each row's request rendered with the tools, the assistant turn opened."""
    return [
        render(tokenizer, _request(row), list(tools), add_generation_prompt=True) for row in rows
    ]


def _request(row: dict) -> list[dict]:
    messages = row["messages"]
    first_answer = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return [{"role": m["role"], "content": m["content"]} for m in messages[:first_answer]]


def answer_rows(model, tokenizer, rows, tools, *, max_new_tokens: int = 112, batch_size: int = 16):
    """Greedy answers to each row's request (special tokens dropped), in the rows' order.

    The prompts are batched longest first: requests of a kind have prompts of similar
    lengths, so a batch of one-call requests stops as soon as its calls are written
    instead of waiting for a two-call answer. 112 new tokens fit the longest two-call
    answer of the test split (103 tokens).
    """
    texts = prompts(tokenizer, rows, tools)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    answers = decode_batches(
        model,
        tokenizer,
        [texts[i] for i in order],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        do_sample=False,
    )
    restored = [""] * len(texts)
    for position, i in enumerate(order):
        restored[i] = answers[position]
    return restored


def reply(model, tokenizer, messages: list[dict], tools, *, max_new_tokens: int = 112) -> str:
    """The model's greedy next assistant turn after `messages` (special tokens dropped)."""
    text = render(tokenizer, messages, list(tools), add_generation_prompt=True)
    return decode_batches(
        model, tokenizer, [text], batch_size=1, max_new_tokens=max_new_tokens, do_sample=False
    )[0]


def run_calls(calls: Sequence[dict]) -> list[dict]:
    """Run each parsed call with the Python function of its name; one ``tool`` message each."""
    return [{"role": "tool", "content": json.dumps(run_call(call))} for call in calls]


# ------------------------------------------------------------------ what the losses teach
@dataclass(frozen=True)
class TokenLosses:
    """Mean next-token loss of one conversation on the assistant's tokens and on the rest."""

    assistant: float
    context: float


def token_losses(model, tokenizer, rows: Sequence[dict], tools: Sequence[dict]):
    """Teacher-forced loss per conversation, split by ``assistant_mask`` (one row at a time).

    `context` covers every other token the model predicts (system message with the tools,
    the user's request, tool results): what a loss on every token also trains.
    """
    out = []
    was_training = model.training
    model.eval()  # no dropout; restored below
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for row in rows:
                text = render(tokenizer, row["messages"], list(tools))
                ids, mask = assistant_mask(tokenizer, text)
                logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1]
                nll = torch.nn.functional.cross_entropy(
                    logits.float(), torch.tensor(ids[1:], device=device), reduction="none"
                )
                scored = torch.tensor(mask[1:], dtype=torch.bool, device=device)
                out.append(TokenLosses(nll[scored].mean().item(), nll[~scored].mean().item()))
    finally:
        model.train(was_training)
    return out


@contextlib.contextmanager
def captured_logs(name: str = "transformers"):
    """Collect what `name`'s loggers log (instead of printing it to stderr); yields the list."""
    import logging

    logger = logging.getLogger(name)
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    saved = logger.handlers[:]
    collector = Collect()
    logger.handlers = [collector]
    try:
        yield messages
    finally:
        logger.handlers = saved
