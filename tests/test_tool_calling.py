"""helpers.tool_calling and helpers.data.tool_calls: template, mask, parser, scores, data."""

from __future__ import annotations

import json

import pytest

from helpers import tool_calling as tc
from helpers.data import tool_calls as data

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
TOOL_LIST = (
    "\n\nYou can call these tools:\n"
    "convert_units(value: number, from_unit: km|mi|kg|lb|C|F, to_unit: km|mi|kg|lb|C|F, "
    "digits?: integer): Convert a length, mass or temperature to another unit.\n"
    "days_between(start: string, end: string): Count the days between two dates.\n"
    "city_facts(city: string, fields?: list[string]): Look up facts about a city.\n"
    'Call a tool with <tool_call>{"name": ..., "arguments": {...}}</tool_call> or, if none '
    "fits, answer in plain text.<|im_end|>\n"
)
CALL = {"name": "convert_units", "arguments": {"value": 5, "from_unit": "km", "to_unit": "mi"}}
LOOP = [
    {"role": "user", "content": "5 km in miles?"},
    data.tool_call_message([CALL]),
    {"role": "tool", "content": "3.11"},
    {"role": "assistant", "content": "5 km is 3.11 mi."},
]


@pytest.fixture(scope="module")
def tokenizers():
    """(SmolLM2's own tokenizer, the same with the course's tool template)."""
    from transformers import AutoTokenizer

    from helpers import models

    own = AutoTokenizer.from_pretrained(models.checkpoint_dir())
    return own, tc.with_tool_template(own)


@pytest.fixture(scope="module")
def tools():
    return data.tool_schemas()


@pytest.fixture(scope="module")
def rows():
    return {split: data.read_split(split) for split in data.SPLITS}


# ------------------------------------------------------------------ the template
def test_the_template_renders_a_tool_conversation_exactly(tokenizers, tools):
    _, tok = tokenizers
    expected = (
        SYSTEM + TOOL_LIST + "<|im_start|>user\n5 km in miles?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>{"name": "convert_units", "arguments": '
        '{"value": 5, "from_unit": "km", "to_unit": "mi"}}</tool_call><|im_end|>\n'
        "<|im_start|>tool\n3.11<|im_end|>\n"
        "<|im_start|>assistant\n5 km is 3.11 mi.<|im_end|>\n"
    )
    assert tc.render(tok, LOOP, tools) == expected


def test_two_calls_a_system_message_and_dict_arguments(tokenizers, tools):
    _, tok = tokenizers
    other = {"name": "city_facts", "arguments": {"city": "Oslo", "fields": ["country"]}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Two things."},
        {  # arguments as a dict (transformers' shape) and with text before the calls
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{"type": "function", "function": c} for c in (CALL, other)],
        },
    ]
    assert tc.render(tok, messages, tools, add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief."
        + TOOL_LIST
        + "<|im_start|>user\nTwo things.<|im_end|>\n<|im_start|>assistant\nChecking.\n"
        '<tool_call>{"name": "convert_units", "arguments": {"value": 5, "from_unit": "km", '
        '"to_unit": "mi"}}</tool_call>\n<tool_call>{"name": "city_facts", "arguments": '
        '{"city": "Oslo", "fields": ["country"]}}</tool_call><|im_end|>\n'
    )


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour !"},
            {"role": "user", "content": "Bye"},
        ],
    ],
)
@pytest.mark.parametrize("opened", [False, True])
def test_without_tools_it_renders_what_smollm2s_own_template_renders(tokenizers, messages, opened):
    own, tok = tokenizers
    assert tc.render(tok, messages, add_generation_prompt=opened) == tc.render(
        own, messages, add_generation_prompt=opened
    )


def test_smollm2s_own_template_drops_the_tools(tokenizers, tools):
    own, _ = tokenizers
    messages = [{"role": "user", "content": "5 km in miles?"}]
    assert tc.render(own, messages, tools) == tc.render(own, messages)
    assert "convert_units" not in tc.render(own, messages, tools)


def test_adding_a_turn_never_changes_the_earlier_ones(tokenizers, tools, rows):
    _, tok = tokenizers
    for row in rows["train"] + rows["test"]:
        messages = row["messages"]
        for k in range(1, len(messages)):
            shorter = tc.render(tok, messages[:k], tools)
            assert tc.render(tok, messages[: k + 1], tools).startswith(shorter), row["id"]
        # the prompt the model sees at inference is a prefix of the trained conversation
        opened = tc.render(tok, messages[:1], tools, add_generation_prompt=True)
        assert tc.render(tok, messages, tools).startswith(opened)


def test_the_template_adds_no_token(tokenizers, tools):
    own, tok = tokenizers
    assert len(tok) == len(own)
    text = tc.render(tok, LOOP, tools)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


# ------------------------------------------------------------------ the mask
def test_the_hand_mask_equals_transformers_assistant_mask(tokenizers, tools, rows):
    _, tok = tokenizers
    for row in rows["train"]:
        text = tc.render(tok, row["messages"], tools)
        ids, mask = tc.assistant_mask(tok, text)
        out = tok.apply_chat_template(
            row["messages"],
            tools=tools,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        assert ids == list(out["input_ids"])
        assert mask == list(out["assistant_masks"]), row["id"]


def test_the_mask_covers_the_answers_and_their_end_of_turn(tokenizers, tools):
    _, tok = tokenizers
    ids, mask = tc.assistant_mask(tok, tc.render(tok, LOOP, tools))
    marked = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert marked == (
        '<tool_call>{"name": "convert_units", "arguments": {"value": 5, "from_unit": "km", '
        '"to_unit": "mi"}}</tool_call><|im_end|>5 km is 3.11 mi.<|im_end|>'
    )


def test_the_hand_mask_equals_trls_labels(tiny, tools):
    """trl's SFTTrainer with assistant_only_loss=True puts loss on exactly the hand mask."""
    from helpers import training

    _, tiny_tok = tiny
    tok = tc.with_tool_template(tiny_tok)
    dataset = data.dataset_splits()["train"].select(range(8))
    args = training.sft_config(
        "outputs/test_tool_calling", max_steps=1, max_length=512, assistant_only_loss=True
    )
    trainer = training.build_trainer(tiny[0], tok, dataset, args, lm_head="trl")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    for i in range(8):
        text = tc.render(tok, dataset[i]["messages"], json.loads(dataset[i]["tools"]))
        ids, mask = tc.assistant_mask(tok, text)
        n = len(ids)
        assert batch["input_ids"][i, :n].tolist() == ids
        assert (batch["labels"][i, :n] != -100).long().tolist() == mask
        assert (batch["labels"][i, n:] == -100).all()


# ------------------------------------------------------------------ the parser
@pytest.mark.parametrize(
    ("text", "calls", "malformed", "unknown"),
    [
        ("Just text.", 0, 0, []),
        (
            '<tool_call>{"name": "days_between", "arguments": {"start": "a", "end": "b"}}'
            "</tool_call>",
            1,
            0,
            [],
        ),
        ('<tool_call>{"name": "days_between", "arguments": {"start": "a",}}</tool_call>', 0, 1, []),
        ('<tool_call>{"name": "days_between", "arguments": {"start": "a"}}', 0, 1, []),
        ('<tool_call>{"name": "fly", "arguments": {}}</tool_call>', 0, 0, ["fly"]),
        ('<tool_call>{"arguments": {}}</tool_call>', 0, 1, []),
        ('<tool_call>{"name": "city_facts"}</tool_call>', 0, 1, []),
        ('<tool_call>{"name": "city_facts", "arguments": [1]}</tool_call>', 0, 1, []),
        ('<tool_call>"city_facts"</tool_call>', 0, 1, []),
        ("<tool_call></tool_call>", 0, 1, []),
        (
            '<tool_call>{"name": "city_facts", "arguments": "{\\"city\\": \\"Oslo\\"}"}'
            "</tool_call>",
            1,
            0,
            [],
        ),
        ("<tool_call>" + "[" * 5000 + "</tool_call>", 0, 1, []),
    ],
)
def test_the_parser_counts_problems_and_never_raises(text, calls, malformed, unknown):
    parsed = tc.parse_tool_calls(text)
    assert (len(parsed.calls), parsed.malformed, parsed.unknown) == (calls, malformed, unknown)


def test_the_parser_keeps_nested_arguments_and_the_text_around():
    text = (
        'Sure. <tool_call>{"name": "city_facts", "arguments": {"city": "Oslo", "fields": '
        '["country", "population"]}}</tool_call> <tool_call>{"name": "x", "arguments": {}}'
        "</tool_call>"
    )
    parsed = tc.parse_tool_calls(text)
    assert parsed.calls == [
        {"name": "city_facts", "arguments": {"city": "Oslo", "fields": ["country", "population"]}}
    ]
    assert parsed.unknown == ["x"] and parsed.text == "Sure."


# ------------------------------------------------------------------ validation and scores
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"value": 5, "from_unit": "km", "to_unit": "mi"}, None),
        ({"value": 5.5, "from_unit": "km", "to_unit": "mi", "digits": 1}, None),
        ({"value": 5, "from_unit": "km"}, "missing 'to_unit'"),
        ({"value": "5", "from_unit": "km", "to_unit": "mi"}, "expected number"),
        ({"value": True, "from_unit": "km", "to_unit": "mi"}, "expected number"),
        ({"value": 5, "from_unit": "km", "to_unit": "mi", "digits": 1.5}, "expected integer"),
        ({"value": 5, "from_unit": "kilometres", "to_unit": "mi"}, "is not one of"),
        ({"value": 5, "from_unit": "km", "to_unit": "mi", "round": 2}, "unexpected 'round'"),
    ],
)
def test_validation_against_the_generated_schema(tools, arguments, problem):
    problems = tc.validate_arguments(arguments, tc.schemas_by_name(tools)["convert_units"])
    assert (problems == []) if problem is None else any(problem in p for p in problems)


def test_validation_of_nested_and_nullable_arguments(tools):
    schema = tc.schemas_by_name(tools)["city_facts"]
    assert tc.validate_arguments({"city": "Oslo", "fields": ["country"]}, schema) == []
    assert tc.validate_arguments({"city": "Oslo", "fields": None}, schema) == []
    assert tc.validate_arguments({"city": "Oslo", "fields": [3]}, schema) == [
        "arguments.fields[0]: expected string, got int"
    ]


def test_validation_agrees_with_jsonschema_where_their_rules_meet(rows, tools):
    """On the data's own calls and broken copies of them (jsonschema: a test dependency)."""
    jsonschema = pytest.importorskip("jsonschema")
    schemas = tc.schemas_by_name(tools)
    for row in rows["train"]:
        for call in row["calls"]:
            params = dict(
                schemas[call["name"]]["function"]["parameters"], additionalProperties=False
            )
            for args in (call["arguments"], {**call["arguments"], "extra": 1}, {}):
                ours = not tc.validate_arguments(args, schemas[call["name"]])
                theirs = jsonschema.Draft202012Validator(params).is_valid(args)
                assert ours == theirs, (call, args)


def test_scores_of_perfect_and_empty_answers(rows, tools):
    test = rows["test"]
    perfect = [
        "\n".join(f"<tool_call>{json.dumps(c)}</tool_call>" for c in r["calls"]) or "No tool fits."
        for r in test
    ]
    scores = tc.score(perfect, test, tools)
    assert all(scores.rate(m).value == 1.0 for m in tc.METRICS if m != "false_call")
    assert scores.rate("false_call").hits == 0
    calls = sum(1 for r in test if r["calls"])
    assert scores.rate("valid_call").n == calls and scores.rate("plain_text").n == len(test) - calls
    silent = tc.score(["Hello."] * len(test), test, tools)
    assert silent.rate("valid_call").hits == silent.rate("exact_arguments").hits == 0
    assert silent.rate("plain_text").value == 1.0
    table = tc.confusion(perfect, test)
    assert sum(sum(c.values()) for c in table.values()) == len(test)
    assert all(set(counts) <= {wanted} for wanted, counts in table.items())


# ------------------------------------------------------------------ the tools and the data
def test_the_tools_run():
    assert data.convert_units(10, "km", "mi") == 6.21
    assert data.convert_units(100, "C", "F", digits=0) == 212
    assert data.days_between("2024-02-27", "2024-03-01") == 3
    assert data.city_facts("Oslo", ["country"]) == {"country": "Norway"}
    assert data.run_call({"name": "convert_units", "arguments": {"value": 1}})["error"]
    assert (
        "cannot convert"
        in data.run_call(
            {"name": "convert_units", "arguments": {"value": 1, "from_unit": "km", "to_unit": "kg"}}
        )["error"]
    )


def test_the_schemas_come_from_the_functions(tools):
    convert, days, city = tools
    assert convert["function"]["parameters"]["required"] == ["value", "from_unit", "to_unit"]
    assert convert["function"]["parameters"]["properties"]["to_unit"]["enum"] == list(data.UNITS)
    assert days["function"]["name"] == "days_between"
    assert city["function"]["parameters"]["properties"]["fields"]["items"] == {"type": "string"}


def test_the_bundled_files_are_what_the_generator_writes(rows):
    for split in data.SPLITS:
        assert data.generate_split(split) == rows[split]
        assert data.generate_split(split) == data.generate_split(split)
        assert len(rows[split]) == data.SIZES[split]


def test_the_test_split_is_unseen(rows):
    assert data.test_is_unseen(rows) == dict.fromkeys(
        ("requests", "cities", "values", "years"), True
    )
    ids = [r["id"] for split in data.SPLITS for r in rows[split]]
    assert len(ids) == len(set(ids))


def test_every_kind_is_in_every_split_and_the_calls_match_the_messages(rows):
    for split in data.SPLITS:
        assert {r["kind"] for r in rows[split]} == {"single", "two", "none"}
        for r in rows[split]:
            made = r["messages"][1].get("tool_calls") or []
            assert [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                for c in made
            ] == r["calls"]
            assert len(r["calls"]) == {"single": 1, "two": 2, "none": 0}[r["kind"]]


def test_the_data_set_loads_by_name():
    import helpers

    splits = helpers.load_dataset("tool-calls")
    assert {s: len(d) for s, d in splits.items()} == data.SIZES
    row = helpers.load_dataset("tool-calls", "validation")[0]
    assert json.loads(row["tools"]) == data.tool_schemas()
    with pytest.raises(ValueError, match="split"):
        helpers.load_dataset("tool-calls", "dev")


# ------------------------------------------------------------------ generation and losses
def test_answers_come_back_in_the_rows_order(tiny, tools, rows, monkeypatch):
    """Batched longest first, returned in the order of the rows."""
    model, tiny_tok = tiny
    tok = tc.with_tool_template(tiny_tok)
    some = rows["test"][:6]
    seen = []

    def echo(model, tokenizer, texts, **kwargs):
        seen.extend(texts)
        return list(texts)

    monkeypatch.setattr(tc, "decode_batches", echo)
    answers = tc.answer_rows(model, tok, some, tools, batch_size=4)
    assert answers == tc.prompts(tok, some, tools)
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in seen]
    assert lengths == sorted(lengths, reverse=True)


def test_token_losses_split_the_assistants_tokens_from_the_rest(tiny, tools, rows):
    model, tiny_tok = tiny
    tok = tc.with_tool_template(tiny_tok)
    model.train()
    losses = tc.token_losses(model, tok, rows["validation"][:2], tools)
    assert model.training  # the mode is restored
    model.eval()
    assert len(losses) == 2
    assert all(0 < x.assistant < 20 and 0 < x.context < 20 for x in losses)


def test_the_missing_generation_markers_are_only_logged(tokenizers):
    own, _ = tokenizers
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    with tc.captured_logs() as logged:
        out = own.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    assert sum(out["assistant_masks"]) == 0
    assert any("{% generation %}" in m for m in logged)
