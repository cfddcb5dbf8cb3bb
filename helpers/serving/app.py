"""A small OpenAI-compatible chat server: FastAPI app with ``/v1/chat/completions`` and ``/health``.

What makes it safe to leave running:
- every request is validated by a strict pydantic model (unknown fields, wrong types,
  empty messages and out-of-range ``max_tokens`` are refused with 422 and a message that
  says which field is wrong); bodies over ``max_body_bytes`` get 413 before being read;
- requests are **queued, not batched**: one worker thread generates one answer at a time
  (a 135M model on a CPU gains little from batching and queued answers cannot mix);
- the queue is bounded: when ``max_pending`` requests are already admitted, the next
  one gets 503 with ``Retry-After`` at once, instead of piling up until memory runs out;
- weights are read from safetensors only and ``trust_remote_code`` is never enabled.
Decoding is greedy (``temperature`` is accepted for compatibility and must be 0).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS_LIMIT = 256
"""The largest ``max_tokens`` a request may ask for (bigger is refused with 422)."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class ChatRequest(BaseModel):
    """The accepted subset of OpenAI's chat-completions request (anything else is refused)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=32)
    max_tokens: int = Field(default=64, ge=1, le=MAX_TOKENS_LIMIT, strict=True)
    temperature: float = Field(default=0.0, ge=0.0, le=0.0)
    stream: Literal[False] = False


class Busy(Exception):
    """The queue is full: the request is refused (HTTP 503) rather than queued."""


class BoundedWorker:
    """Runs jobs one at a time on a single thread, admitting at most ``max_pending``.

    ``max_pending`` counts the running job and the waiting ones. ``submit`` raises
    ``Busy`` at once when it is reached: the caller answers 503 and memory stays bounded.
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

    async def submit(self, fn, *args):
        with self._lock:
            if self.pending >= self.max_pending:
                self.refused += 1
                raise Busy(f"{self.pending} requests already queued")
            self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
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
        import json

        body = json.dumps(
            {"detail": f"request body larger than {self.limit} bytes; send a shorter prompt"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def load_for_serving(model_dir: str):
    """Model and tokenizer from a local folder: safetensors only, no remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    )
    return model.eval(), tokenizer


def complete(model, tokenizer, messages: list[dict], max_tokens: int) -> dict:
    """One greedy answer: text, token counts and why it stopped ("stop" or "length")."""
    import torch

    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new = out[0, ids.shape[1] :].tolist()
    stopped = tokenizer.eos_token_id in new
    if stopped:
        new = new[: new.index(tokenizer.eos_token_id)]
    return {
        "text": tokenizer.decode(new, skip_special_tokens=True).strip(),
        "prompt_tokens": int(ids.shape[1]),
        "completion_tokens": len(new) + int(stopped),
        "finish_reason": "stop" if stopped else "length",
    }


def create_app(
    model_dir: str,
    *,
    model_name: str = "course-model",
    max_pending: int = 8,
    max_body_bytes: int = 64_000,
):
    """The FastAPI application serving the checkpoint in ``model_dir``."""
    from fastapi import FastAPI, HTTPException

    model, tokenizer = load_for_serving(model_dir)
    worker = BoundedWorker(max_pending)
    app = FastAPI(title="course model server", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "model": model_name,
            "pending": worker.pending,
            "served": worker.done,
            "refused_busy": worker.refused,
        }

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        messages = [m.model_dump() for m in request.messages]
        try:
            result = await worker.submit(complete, model, tokenizer, messages, request.max_tokens)
        except Busy as err:
            raise HTTPException(
                503, f"server busy ({err}); retry shortly", headers={"Retry-After": "1"}
            ) from None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model or model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result["text"]},
                    "finish_reason": result["finish_reason"],
                }
            ],
            "usage": {
                "prompt_tokens": result["prompt_tokens"],
                "completion_tokens": result["completion_tokens"],
                "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
            },
        }

    app.state.worker = worker
    return BodyLimit(app, max_body_bytes)
