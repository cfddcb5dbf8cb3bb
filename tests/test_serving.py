"""The chat server on the tiny model: bad requests refused, load served, queue bounded, stopped.
(tests/test_serving_openai.py drives it with the official ``openai`` client.)"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import helpers
from helpers.serving import app as server_app
from helpers.serving.launcher import Server, free_port


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    out = tmp_path_factory.mktemp("served")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with Server(model_dir, max_pending=2, log_dir=tmp_path_factory.mktemp("logs")) as running:
        yield running
    assert not running.running  # stopped when the block ends


GOOD = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
BAD = {
    "no messages": {"messages": []},
    "missing messages": {"max_tokens": 4},
    "empty content": {"messages": [{"role": "user", "content": ""}]},
    "huge max_tokens": {**GOOD, "max_tokens": 10**9},
    "negative max_tokens": {**GOOD, "max_tokens": -1},
    "max_tokens as text": {**GOOD, "max_tokens": "12"},
    "messages as text": {"messages": "Hello"},
    "unknown role": {"messages": [{"role": "wizard", "content": "Hello"}]},
    "unknown field": {**GOOD, "top_k": 5},
    "streaming as text": {**GOOD, "stream": "yes"},
    "temperature too high": {**GOOD, "temperature": 7},
    "several answers": {**GOOD, "n": 3},
}


def _is_openai_error(body: dict) -> bool:
    return set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    for name, payload in BAD.items():
        status, body = server.post(payload)
        assert status == 400, (name, status, body)
        assert _is_openai_error(body) and body["error"]["message"], (name, body)
    status, body = server.post(raw=b"{not json")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = server.post(raw=b"x" * 100_000)  # body over the limit
    assert status == 413 and _is_openai_error(body)
    status, body = server.post(path="/v1/nothing")
    assert status == 404 and _is_openai_error(body)
    status, body = server.post(GOOD)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] <= 4
    assert server.health()["status"] == "ok" and server.running


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": "Count " + "and " * i + f"stop {i}."}]


def test_50_requests_from_8_clients_none_lost_none_mixed(server, model_dir):
    model, tokenizer = server_app.load_for_serving(str(model_dir))
    expected = {i: server_app.complete(model, tokenizer, _prompt(i), 6) for i in range(50)}
    busy = []

    def client(i):
        # A client that retries when told the server is busy, for up to two minutes: a
        # deadline, not a count of tries, so that a slow machine does not fail the test.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, body = server.post({"messages": _prompt(i), "max_tokens": 6})
            if status != 503:
                return i, status, body
            busy.append(i)
            time.sleep(0.01)
        return i, 503, {}

    before = server.health()["refused_busy"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(client, range(50)))
    assert [status for _, status, _ in results] == [200] * 50  # none lost
    for i, _, body in results:  # none mixed: each answer is the one for its own prompt
        assert body["usage"]["prompt_tokens"] == expected[i]["prompt_tokens"]
        assert body["choices"][0]["message"]["content"] == expected[i]["text"]
    health = server.health()
    assert health["refused_busy"] - before == len(busy)  # the queue (2) was full at times
    assert len(busy) > 0
    assert health["pending"] == 0


def test_bounded_worker_refuses_when_full_and_runs_one_at_a_time():
    release = threading.Event()
    running = []

    def job(i):
        running.append(i)
        release.wait(30)
        return i

    async def scenario():
        worker = server_app.BoundedWorker(max_pending=2)
        first = asyncio.ensure_future(worker.submit(job, 1))
        second = asyncio.ensure_future(worker.submit(job, 2))
        for _ in range(200):  # the first job starts on the worker's thread (within 10 s)
            if running:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert worker.pending == 2 and running == [1]  # one runs, one waits
        with pytest.raises(server_app.Busy):
            await worker.submit(job, 3)
        release.set()
        results = await asyncio.gather(first, second)
        assert worker.pending == 0 and worker.refused == 1
        assert await worker.submit(job, 4) == 4  # room again
        return results

    assert asyncio.run(scenario()) == [1, 2]
    with pytest.raises(ValueError):
        server_app.BoundedWorker(0)


def test_free_port_can_be_bound():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_a_server_that_cannot_start_is_reported_and_stopped(tmp_path):
    server = Server(tmp_path / "no-such-model", log_dir=tmp_path, startup_timeout=120)
    with pytest.raises(RuntimeError, match="exited with code"):
        server.start()
    assert not server.running


def test_refuses_weights_that_are_not_safetensors(tmp_path, model_dir):
    import shutil

    import torch
    from safetensors.torch import load_file

    for f in model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path / f.name)
    torch.save(load_file(str(model_dir / "model.safetensors")), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        server_app.load_for_serving(str(tmp_path))


def test_the_server_command_chapter_08_prints_parses_with_the_servers_parser():
    """The line a learner copies from chapter 08's stored output starts the same server."""
    import shlex

    import nbformat

    from helpers.serving.__main__ import parser

    path = Path(__file__).resolve().parent.parent / "notebooks" / "08_deployment.ipynb"
    nb = nbformat.read(path, as_version=4)
    printed = [
        line.strip()
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        for line in output.get("text", "").splitlines()
        if line.strip().startswith("python -m helpers.serving")
    ]
    assert printed, "chapter 08 no longer prints the server command"
    for line in printed:
        args = parser().parse_args(shlex.split(line)[3:])
        assert args.model_dir.endswith("merged") and args.port == 8000
        assert args.model_name == "smollm2-yoda"
