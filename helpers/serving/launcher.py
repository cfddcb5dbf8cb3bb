"""Start the chat server as a subprocess on a free 127.0.0.1 port, talk to it, always stop it.

``with Server(model_dir) as server: server.chat([...])``: the process is stopped when the
block ends, also after an error, and at interpreter exit if it was left running. The
client side here uses only the standard library (``urllib``), as any HTTP client would;
``server.url + "/v1"`` is the base URL for the official ``openai`` client and other
OpenAI-compatible tools.
"""

from __future__ import annotations

import atexit
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from ..repo import child_env

REQUEST_TIMEOUT_S = 600.0
"""How long a request waits for its answer: a queued request waits for the ones before it,
which on a busy 2-core machine can take minutes."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Reply(NamedTuple):
    """An HTTP answer: status, JSON body and headers (case-insensitive:
    ``headers["Retry-After"]``)."""

    status: int
    body: dict
    headers: http.client.HTTPMessage


def exchange(
    url: str,
    payload=None,
    *,
    method: str | None = None,
    raw: bytes | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
) -> Reply:
    """The ``Reply`` to one request; 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, json.loads(resp.read() or b"{}"), resp.headers)
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = {"error": {"message": body.decode(errors="replace")}}
        return Reply(err.code, parsed, err.headers)


def request(
    url: str,
    payload=None,
    *,
    method: str | None = None,
    raw: bytes | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
) -> tuple[int, dict]:
    """(HTTP status, JSON body) of one request; 4xx/5xx are returned, not raised."""
    reply = exchange(url, payload, method=method, raw=raw, timeout=timeout)
    return reply.status, reply.body


class Server:
    """The chat server running in its own process (see ``helpers.serving.app``)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_pending: int = 8,
        model_name: str = "course-model",
        startup_timeout: float = 180.0,
        log_dir: str | Path | None = None,
    ):
        self.model_dir = str(model_dir)
        self.max_pending = max_pending
        self.model_name = model_name
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = child_env()
        command = [
            sys.executable,
            "-m",
            "helpers.serving",
            self.model_dir,
            "--port",
            str(self.port),
            "--max-pending",
            str(self.max_pending),
            "--model-name",
            self.model_name,
        ]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"the server exited with code {self.process.returncode} before it was ready; "
                    f"its log says:\n{self.log_tail()}"
                )
            try:
                status, _ = request(self.url + "/health", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(
            f"the server was not ready after {self.startup_timeout:.0f} s (machine busy? raise "
            f"startup_timeout); its log says:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process (politely, then by force) and wait for it; safe to call twice."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def post(self, payload=None, *, raw: bytes | None = None, path: str = "/v1/chat/completions"):
        """(status, body) of a POST to the chat endpoint (or ``path``)."""
        return request(self.url + path, payload, raw=raw, method="POST")

    def send(self, payload, *, path: str = "/v1/chat/completions") -> Reply:
        """The ``Reply`` (status, body, headers) to a POST to the chat endpoint."""
        return exchange(self.url + path, payload, method="POST")

    def chat(self, messages: list[dict], max_tokens: int = 64) -> str:
        """The assistant's answer to ``messages``; raises with the server's message on an error."""
        status, body = self.post({"messages": messages, "max_tokens": max_tokens})
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body.get('error', {}).get('message')}")
        return body["choices"][0]["message"]["content"]

    def health(self) -> dict:
        return request(self.url + "/health")[1]
