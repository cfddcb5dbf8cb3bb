"""The chat server driven by the official ``openai`` client, as a learner's tools would use it:
plain and streamed answers, seeds, stop sequences, the model list, every refusal in OpenAI's
error shape, a concurrent mixed load, and clients that leave in the middle of an answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request

import openai
import pytest
import uvicorn

import helpers
from helpers.serving import app as server_app
from helpers.serving.launcher import Server, exchange, free_port

NAME = "tiny-test"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]
SAMPLED = {"temperature": 1.0, "seed": 5}
"""The tiny random model's greedy answer is newlines only (stripped: ""); a seeded sample
is reproducible text, so the tests that compare texts sample."""


@pytest.fixture(scope="module")
def tiny_model():
    return helpers.load_model("tiny-random-smollm2", device="cpu")


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    model, tokenizer = tiny_model
    out = tmp_path_factory.mktemp("served")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    with Server(model_dir, max_pending=2, model_name=NAME, log_dir=logs) as running:
        yield running
    assert not running.running


@pytest.fixture
def client(server):
    # max_retries=0: the tests see every refusal themselves (the client would retry 503s)
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120
    ) as made:
        yield made


def _generate_reference(tiny_model, messages, max_new_tokens):
    """transformers' own greedy generate: (text, prompt tokens, new tokens with the EOS,
    whether it ended with the EOS)."""
    import torch

    model, tokenizer = tiny_model
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new = out[0, ids.shape[1] :].tolist()
    ended = tokenizer.eos_token_id in new
    if ended:
        new = new[: new.index(tokenizer.eos_token_id) + 1]
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    return text, ids.shape[1], len(new), ended


# --- answers -------------------------------------------------------------------------------


def test_plain_chat_matches_transformers_and_counts_tokens_like_the_tokenizer(client, tiny_model):
    reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=8, temperature=0)
    text, prompt_tokens, new_tokens, ended = _generate_reference(tiny_model, HELLO, 8)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == NAME
    assert choice.message.role == "assistant" and choice.message.content == text
    assert choice.finish_reason == ("stop" if ended else "length")
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == new_tokens
    assert reply.usage.total_tokens == prompt_tokens + new_tokens
    short = client.chat.completions.create(model=NAME, messages=HELLO, max_completion_tokens=3)
    assert short.usage.completion_tokens <= 3
    assert short.choices[0].finish_reason == (
        "length" if short.usage.completion_tokens == 3 else "stop"
    )


def test_a_seed_reproduces_a_sample_and_other_seeds_draw_other_answers(client):
    def sample(seed):
        reply = client.chat.completions.create(
            model=NAME, messages=HELLO, max_tokens=12, temperature=1.0, top_p=0.95, seed=seed
        )
        return reply.choices[0].message.content

    first = sample(1234)
    assert first and sample(1234) == first
    assert {sample(seed) for seed in (1, 2, 3)} - {first}  # not all the same answer
    greedy = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=12)
    again = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=12, seed=9)
    assert greedy.choices[0].message.content == again.choices[0].message.content  # no sampling


def test_streaming_sends_chunks_that_add_up_to_the_answer(client, server):
    whole = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=16, **SAMPLED)
    stream = client.chat.completions.create(
        model=NAME,
        messages=HELLO,
        max_tokens=16,
        **SAMPLED,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == NAME for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[:-1] == [None] * (len(finals) - 1)
    assert finals[-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # the usage chunk
    # the raw events: data lines of JSON chunks, ending with [DONE]
    payload = {"messages": HELLO, "max_tokens": 4, "stream": True}
    req = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])
    assert all("usage" not in json.loads(e[6:]) for e in events[:-1])  # not asked for


def test_a_stop_sequence_cuts_the_answer_before_it(client):
    whole = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=24, **SAMPLED)
    text = whole.choices[0].message.content
    middle = len(text) // 2
    stop = text[middle : middle + 3]
    assert len(stop.strip()) == 3 and "\ufffd" not in stop, repr(text)
    expected = text[: text.find(stop)].strip()
    for stops in (stop, [stop, "never written anywhere"]):
        cut = client.chat.completions.create(
            model=NAME, messages=HELLO, max_tokens=24, stop=stops, **SAMPLED
        )
        assert cut.choices[0].message.content == expected
        assert cut.choices[0].finish_reason == "stop"
        assert cut.usage.completion_tokens < whole.usage.completion_tokens
    streamed = client.chat.completions.create(
        model=NAME, messages=HELLO, max_tokens=24, stop=[stop], stream=True, **SAMPLED
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_model_list_names_the_served_model(client):
    listed = client.models.list()
    assert [m.id for m in listed.data] == [NAME]
    assert listed.data[0].object == "model" and listed.data[0].owned_by
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5")
    assert caught.value.param == "model"


def test_metadata_fields_and_neutral_values_are_accepted(client):
    plain = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=6, **SAMPLED)
    dressed = client.chat.completions.create(
        model="any-name-a-tool-sends",
        messages=[
            {"role": "developer", "content": "You are helpful."},
            {"role": "user", "name": "ana", "content": [{"type": "text", "text": "Hi"}]},
        ],
        max_tokens=6,
        n=1,
        logprobs=False,
        frequency_penalty=0,
        presence_penalty=0,
        response_format={"type": "text"},
        tool_choice="none",
        user="learner-1",
        metadata={"chapter": "08"},
        store=False,
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        parallel_tool_calls=False,
    )
    assert dressed.model == NAME and dressed.usage.completion_tokens == 6
    same = client.chat.completions.create(
        model=NAME, messages=HELLO, max_tokens=6, user="x", **SAMPLED
    )
    assert same.choices[0].message.content == plain.choices[0].message.content


# --- refusals ------------------------------------------------------------------------------

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
REFUSED = {  # name: (the request's keyword arguments, the field the error must name)
    "several answers": ({"n": 2}, "n"),
    "log probabilities": ({"logprobs": True}, "logprobs"),
    "top log probabilities": ({"top_logprobs": 3}, "top_logprobs"),
    "an image": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, IMAGE]}]},
        "messages[0].content[1]",
    ),
    "tools": (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        "tools",
    ),
    "tool choice": ({"tool_choice": "required"}, "tool_choice"),
    "JSON output": ({"response_format": {"type": "json_object"}}, "response_format"),
    "a penalty": ({"presence_penalty": 0.5}, "presence_penalty"),
    "logit bias": ({"logit_bias": {"42": 10}}, "logit_bias"),
    "unknown field": ({"extra_body": {"top_k": 5}}, "top_k"),
    "stream options without a stream": (
        {"stream_options": {"include_usage": True}},
        "stream_options",
    ),
    "temperature 3": ({"temperature": 3}, "temperature"),
    "top_p 0": ({"top_p": 0}, "top_p"),
    "max_tokens 10**9": ({"max_tokens": 10**9}, "max_tokens"),
    "max_tokens -1": ({"max_tokens": -1}, "max_tokens"),
    "max_completion_tokens as text": ({"max_completion_tokens": "12"}, "max_completion_tokens"),
    "seed as text": ({"seed": "7"}, "seed"),
    "five stop sequences": ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    "no messages": ({"messages": []}, "messages"),
    "unknown role": ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role"),
    "tool message": (
        {"messages": [{"role": "tool", "content": "42", "tool_call_id": "1"}]},
        "messages[0].role",
    ),
    "empty content": ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    "unknown message field": (
        {"messages": [{"role": "user", "content": "Hi", "mood": "happy"}]},
        "messages[0].mood",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_the_server_cannot_honour_is_refused_with_openais_error(client, name):
    kwargs, param = REFUSED[name]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{"model": NAME, "messages": HELLO, **kwargs})
    error = caught.value
    body = error.response.json()
    assert error.status_code == 400
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert error.param == param, body
    assert param in error.message and error.code


def test_raw_refusals_have_the_same_shape_and_the_server_keeps_serving(server, client):
    for raw, status, code in [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_type"),
        (b"x" * 100_000, 413, "request_too_large"),
    ]:
        got, body = server.post(raw=raw)
        assert (got, body["error"]["code"]) == (status, code)
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert server.post({"messages": HELLO}, path="/v1/completions")[0] == 404
    reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=2)
    assert reply.choices[0].message.content is not None


# --- load ----------------------------------------------------------------------------------


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Request {i}: count " + "and " * i + "stop."}]


def test_a_concurrent_mixed_load_gets_its_own_answers_and_the_queue_bound(
    server, client, tiny_model
):
    model, tokenizer = tiny_model
    count, tokens = 16, 24
    # sampled with the request's own seed: every answer is different text, and reproducible
    expected = {
        i: server_app.complete(model, tokenizer, _prompt(i), tokens, temperature=1.0, seed=i)
        for i in range(count)
    }
    assert len({e["text"] for e in expected.values()}) == count
    busy: list[int] = []
    before = server.health()["refused_busy"]

    async def one(api: openai.AsyncOpenAI, i: int):
        # a well-behaved client: on 503 it waits as long as Retry-After says, until a deadline
        deadline = time.monotonic() + 180
        kw = {"temperature": 1.0, "seed": i}
        while True:
            try:
                if i % 2:
                    stream = await api.chat.completions.create(
                        model=NAME, messages=_prompt(i), max_tokens=tokens, stream=True, **kw
                    )
                    text = "".join(
                        [c.choices[0].delta.content or "" async for c in stream if c.choices]
                    )
                    return i, text
                reply = await api.chat.completions.create(
                    model=NAME, messages=_prompt(i), max_tokens=tokens, **kw
                )
                return i, reply.choices[0].message.content
            except openai.APIStatusError as err:
                if err.status_code != 503 or time.monotonic() > deadline:
                    raise
                assert err.code == "queue_full"
                busy.append(i)
                await asyncio.sleep(float(err.response.headers["Retry-After"]))

    async def load():
        async with openai.AsyncOpenAI(
            base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120
        ) as api:
            return await asyncio.gather(*(one(api, i) for i in range(count)))

    answers = dict(asyncio.run(load()))
    assert answers == {i: expected[i]["text"] for i in range(count)}  # none lost, none mixed
    health = server.health()
    assert len(busy) > 0  # the queue (2) was full at times: 503 with Retry-After
    assert health["refused_busy"] - before == len(busy)
    assert health["pending"] == 0
    reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=2)
    assert reply.usage.completion_tokens >= 1  # still answering


# --- clients that leave ---------------------------------------------------------------------


class SlowModel:
    """The tiny model, slowed to ``delay`` seconds a token and never ending on its own,
    with a count of the tokens it was asked for."""

    def __init__(self, model, eos_token_id: int, delay: float):
        self.model, self.eos, self.delay = model, eos_token_id, delay
        self.config = model.config
        self.calls = 0

    def __call__(self, **kwargs):
        self.calls += 1
        time.sleep(self.delay)
        out = self.model(**kwargs)
        out.logits[..., self.eos] = float("-inf")
        return out


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on a thread of this process, at a 127.0.0.1 URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _until(check, seconds: float = 30.0) -> bool:
    """Wait until ``check()`` is true (polling), for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _first_text(stream) -> str:
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return chunk.choices[0].delta.content
    raise AssertionError("the stream ended without text")


def test_a_client_that_leaves_stops_its_generation_and_frees_its_place(tiny_model):
    model, tokenizer = tiny_model
    slow = SlowModel(model, tokenizer.eos_token_id, delay=0.05)
    app = server_app.build_app(slow, tokenizer, model_name="slow", max_pending=2)
    long = {"model": "slow", "messages": HELLO, "max_tokens": 200}
    with serving(app) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)

        def health():
            return exchange(url + "/health").body

        running = api.chat.completions.create(**long, stream=True)
        assert _first_text(running)
        assert slow.calls < 200  # text arrives while the answer is still being written
        waiting = api.chat.completions.create(**long, stream=True)  # admitted: queued
        assert health()["pending"] == 2
        for stream in (False, True):  # the queue is full, for streams too
            with pytest.raises(openai.APIStatusError) as caught:
                api.chat.completions.create(**long, stream=stream)
            assert caught.value.status_code == 503
            assert caught.value.response.headers["Retry-After"] == "1"

        waiting.close()  # leaves before its turn: its place is given back at once
        assert _until(lambda: health()["pending"] == 1), health()
        calls = slow.calls
        assert _until(lambda: slow.calls > calls + 2)  # the first one still runs

        running.close()  # leaves mid-answer: the generation stops within a token or two
        assert _until(lambda: health()["pending"] == 0), health()
        stopped_at = slow.calls
        time.sleep(0.5)
        assert slow.calls <= stopped_at + 1 < 200
        assert health()["cancelled"] == 2

        # a plain (not streamed) request whose client gives up is stopped too
        with pytest.raises(openai.APITimeoutError):
            api.with_options(timeout=0.5).chat.completions.create(**long)
        assert _until(lambda: health()["pending"] == 0), health()
        assert health()["cancelled"] == 3

        reply = api.chat.completions.create(**{**long, "max_tokens": 3})
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 3
        api.close()
