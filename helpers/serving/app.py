"""A small OpenAI-compatible chat server: ``POST /v1/chat/completions`` (plain and streamed),
``GET /v1/models`` and ``GET /health``, built with FastAPI.

The official ``openai`` client, chat front-ends and editor plugins can use it: they list
the models, then send the fields of OpenAI's request (``protocol.ChatRequest``) and read
the answer whole or as server-sent events (``chat.completion.chunk``, then
``data: [DONE]``). What makes it safe to leave running:

- every request is validated by a strict pydantic model: unknown fields, wrong types and
  out-of-range values get 400 with OpenAI's error body naming the field, and so does what
  the server cannot honour (``n`` > 1, ``logprobs``, images, tools); bodies over
  ``max_body_bytes`` get 413 before they are read;
- requests are **queued, not batched**: one worker thread writes one answer at a time,
  token by token (a 135M model on a CPU gains little from batching, and queued answers
  cannot mix);
- the queue is bounded: when ``max_pending`` requests are admitted (running or waiting,
  streamed or not), the next one gets 503 with ``Retry-After`` at once, instead of piling
  up until memory runs out;
- a client that goes away (mid-stream or while it waits) stops its generation within a
  token and frees its place in the queue;
- sampling uses a random generator of the request's own, so a ``seed`` reproduces an answer;
- weights are read from safetensors only and ``trust_remote_code`` is never enabled.

Decoding is greedy unless the request asks for ``temperature`` > 0 (OpenAI's default is 1;
here it is 0, so an answer is reproducible unless sampling is asked for).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from .engine import Answer, decode, prompt_ids
from .protocol import (
    DEFAULT_MAX_TOKENS,
    MAX_TOKENS_LIMIT,
    APIError,
    ChatRequest,
    error_body,
    unsupported,
    validation_error,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_TOKENS_LIMIT",
    "BodyLimit",
    "BoundedWorker",
    "Busy",
    "build_app",
    "complete",
    "create_app",
    "load_for_serving",
]

RETRY_AFTER_S = 1
"""What a refused client is told to wait (the ``Retry-After`` header), in seconds."""
POLL_S = 0.25
"""How often a waiting request checks that its client is still there."""


class Busy(Exception):
    """The queue is full: the request is refused (HTTP 503) rather than queued."""


class BoundedWorker:
    """Runs jobs one at a time on a single thread, admitting at most ``max_pending``.

    ``max_pending`` counts the running job and the waiting ones. ``start`` raises ``Busy``
    at once when it is reached: the caller answers 503 and memory stays bounded. A place is
    given back when its job ends, or at once if the job is cancelled before it starts.
    """

    def __init__(self, max_pending: int):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.pending = 0
        self.refused = 0
        self.done = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    def start(self, fn, *args) -> asyncio.Future:
        """Admit ``fn(*args)`` (or raise ``Busy``) and return a future of its result."""
        with self._lock:
            if self.pending >= self.max_pending:
                self.refused += 1
                raise Busy(f"{self.pending} requests already queued")
            self.pending += 1
        try:
            job = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        job.add_done_callback(self._release)  # runs when the job ends or is cancelled
        return asyncio.wrap_future(job)

    async def submit(self, fn, *args):
        return await self.start(fn, *args)

    def _release(self, _job) -> None:
        with self._lock:
            self.pending -= 1
            self.done += 1


class BodyLimit:
    """ASGI middleware: refuse bodies larger than ``limit`` bytes with 413, while reading."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        body = error_body(
            f"request body larger than {self.limit} bytes; send a shorter prompt",
            code="request_too_large",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class _TooLarge(Exception):
    pass


def load_for_serving(model_dir: str):
    """Model and tokenizer from a local folder: safetensors only, no remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    )
    return model.eval(), tokenizer


def answer(
    model,
    tokenizer,
    ids: list[int],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stops: list[str] | tuple = (),
    cancelled: threading.Event | None = None,
    on_text=None,
) -> dict:
    """Write one answer token by token; ``on_text(piece)`` gets each final piece of text.

    Returns the text, the token counts and why it ended: "stop" (end-of-turn token or a
    stop sequence), "length" (``max_tokens`` reached) or "cancelled" (the client left).
    """
    generator = None
    if temperature > 0:
        generator = torch.Generator().manual_seed(
            seed if seed is not None else secrets.randbits(63)
        )
    text = Answer(tokenizer, stops)
    count, last = 0, None
    for token in decode(
        model,
        ids,
        max_tokens=max_tokens,
        eos_token_id=tokenizer.eos_token_id,
        temperature=temperature,
        top_p=top_p,
        generator=generator,
        cancelled=cancelled,
    ):
        count, last = count + 1, token
        piece = text.add(token)
        if piece and on_text:
            on_text(piece)
        if text.stopped_by_sequence:
            break
    piece = text.finish()
    if piece and on_text:
        on_text(piece)
    if cancelled is not None and cancelled.is_set():
        reason = "cancelled"
    elif text.stopped_by_sequence or last == tokenizer.eos_token_id:
        reason = "stop"
    else:
        reason = "length"
    return {
        "text": text.text,
        "prompt_tokens": len(ids),
        "completion_tokens": count,
        "finish_reason": reason,
    }


def complete(model, tokenizer, messages: list[dict], max_tokens: int, **sampling) -> dict:
    """One answer to ``messages`` in this process (what the server would answer):
    text, token counts and why it stopped; ``sampling``: temperature, top_p, seed, stops."""
    return answer(
        model, tokenizer, prompt_ids(tokenizer, messages), max_tokens=max_tokens, **sampling
    )


class _Job:
    """One request's generation: run on the worker's thread, its pieces of text sent to
    the event loop through ``events`` as ("text", piece), then ("end", result) or
    ("error", message)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: bool):
        self.loop, self.stream = loop, stream
        self.cancelled = threading.Event()
        self.events: asyncio.Queue = asyncio.Queue()

    def _emit(self, kind: str, value) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is stopping
            pass

    def run(self, model, tokenizer, ids: list[int], request: ChatRequest) -> dict:
        try:
            result = answer(
                model,
                tokenizer,
                ids,
                max_tokens=request.token_limit,
                temperature=request.temperature or 0.0,
                top_p=request.top_p if request.top_p is not None else 1.0,
                seed=request.seed,
                stops=request.stops,
                cancelled=self.cancelled,
                on_text=(lambda piece: self._emit("text", piece)) if self.stream else None,
            )
        except Exception as err:
            self._emit("error", f"{type(err).__name__}: {err}")
            raise
        self._emit("end", result)
        return result


def build_app(
    model,
    tokenizer,
    *,
    model_name: str = "course-model",
    max_pending: int = 8,
    max_body_bytes: int = 64_000,
):
    """The ASGI application serving ``model`` (any causal LM called like transformers' one)."""
    worker = BoundedWorker(max_pending)
    # the worker's thread decodes with its own copy: a tokenizer is not safe to share
    # between threads (the event loop's thread encodes the prompts)
    worker_tokenizer = copy.deepcopy(tokenizer)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    stats = {"cancelled": 0}
    created = int(time.time())
    app = FastAPI(title="course model server", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        err = validation_error(list(exc.errors()))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(APIError)
    async def refused(_request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        body = error_body(str(exc.detail), code=codes.get(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "model": model_name,
            "pending": worker.pending,
            "served": worker.done,
            "refused_busy": worker.refused,
            "cancelled": stats["cancelled"],
        }

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "course"}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    def one_model(name: str):
        if name != model_name:
            raise APIError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        return model_card()

    def admit(job: _Job, ids: list[int], request: ChatRequest) -> asyncio.Future:
        try:
            return worker.start(job.run, model, worker_tokenizer, ids, request)
        except Busy as err:
            raise APIError(
                503,
                f"server busy ({err}); retry after {RETRY_AFTER_S} s",
                type="server_error",
                code="queue_full",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None

    def stop_job(job: _Job, future: asyncio.Future, why: str | None) -> None:
        if not future.done():
            job.cancelled.set()
            future.cancel()  # a job that has not started yet never runs
            if why:
                stats["cancelled"] += 1

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest, http: Request):
        problem = unsupported(request)
        if problem is not None:
            raise problem
        messages = [m.for_template() for m in request.messages]
        ids = prompt_ids(tokenizer, messages)
        if context and len(ids) + request.token_limit > context:
            raise APIError(
                400,
                f"the conversation ({len(ids)} tokens) and the answer ({request.token_limit} "
                f"tokens) do not fit the model's context of {context} tokens",
                param="messages",
                code="context_length_exceeded",
            )
        job = _Job(asyncio.get_running_loop(), stream=bool(request.stream))
        future = admit(job, ids, request)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model_name,
            "system_fingerprint": None,
        }
        if request.stream:
            return StreamingResponse(
                _events(http, job, future, head, request.include_usage, stop_job),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=POLL_S)
                if done:
                    break
                if await http.is_disconnected():
                    stop_job(job, future, "client left")
                    return Response(status_code=499)
        except asyncio.CancelledError:
            stop_job(job, future, "cancelled")
            raise
        result = future.result()
        return {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result["text"]},
                    "logprobs": None,
                    "finish_reason": result["finish_reason"],
                }
            ],
            "usage": _usage(result),
        }

    app.state.worker = worker
    app.state.stats = stats
    return BodyLimit(app, max_body_bytes)


def _usage(result: dict) -> dict:
    return {
        "prompt_tokens": result["prompt_tokens"],
        "completion_tokens": result["completion_tokens"],
        "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
    }


async def _events(http: Request, job: _Job, future, head: dict, include_usage: bool, stop_job):
    """The server-sent events of one streamed answer: a chunk with the role, a chunk per
    piece of text as it is written, a chunk with ``finish_reason``, the usage (if asked
    for), then ``data: [DONE]``. Leaving early (the client went away) stops the job."""

    def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> str:
        body = {**head, "object": "chat.completion.chunk"}
        body["choices"] = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        waiting = asyncio.ensure_future(job.events.get())
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=POLL_S)
                if not done:
                    if await http.is_disconnected():
                        return
                    continue
                kind, value = waiting.result()
                if kind == "text":
                    yield chunk({"content": value})
                elif kind == "end":
                    finished = True
                    yield chunk({}, value["finish_reason"])
                    if include_usage:
                        yield chunk(None, usage=_usage(value))
                    yield "data: [DONE]\n\n"
                    return
                else:
                    finished = True
                    body = error_body(value, type="server_error", code="generation_failed")
                    yield f"data: {json.dumps(body)}\n\n"
                    return
                waiting = asyncio.ensure_future(job.events.get())
        finally:
            waiting.cancel()
    finally:
        if not finished:
            stop_job(job, future, "client left")


def create_app(
    model_dir: str,
    *,
    model_name: str = "course-model",
    max_pending: int = 8,
    max_body_bytes: int = 64_000,
):
    """The application serving the checkpoint in ``model_dir`` (see ``build_app``)."""
    model, tokenizer = load_for_serving(model_dir)
    return build_app(
        model,
        tokenizer,
        model_name=model_name,
        max_pending=max_pending,
        max_body_bytes=max_body_bytes,
    )
