"""What the server accepts and how it says no, in the shapes of OpenAI's chat API.

``ChatRequest`` lists every field the server knows, each with its type and bounds;
anything else is refused (``extra="forbid"``), so a typo is an error, not a silent
default. Fields are in three groups:

- **honoured**: ``messages``, ``max_tokens`` / ``max_completion_tokens``, ``temperature``
  (0, the default here, is greedy; above 0 samples), ``top_p``, ``seed``, ``stop``,
  ``stream`` and ``stream_options.include_usage``, ``n`` = 1;
- **metadata only**, accepted and ignored: ``METADATA_FIELDS``;
- **known but not honoured** (``n`` > 1, ``logprobs``, ``top_logprobs``, images and audio
  in messages, ``tools`` until chapter 12, penalties, ``logit_bias``, JSON output):
  ``unsupported`` names the first one a request uses, and the server answers 400.

Every refusal has OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``
(``error_body``), so a client shows the reason instead of a parsing failure.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS_LIMIT = 256
"""The most new tokens a request may ask for (more is refused with 400)."""
DEFAULT_MAX_TOKENS = MAX_TOKENS_LIMIT
"""New tokens when a request names no limit (OpenAI's default is "as many as allowed")."""
METADATA_FIELDS = (
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
)
"""Fields that only carry information about the request: accepted and ignored."""


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(max_length=4000)


class MediaPart(BaseModel):
    """An image, audio or file part: recognised so that the refusal can name it."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file"]


Part = Annotated[TextPart | MediaPart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(min_length=1, max_length=4000)]
        | Annotated[list[Part], Field(min_length=1, max_length=16)]
    )
    name: str | None = Field(default=None, max_length=64)  # metadata: ignored

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))

    def for_template(self) -> dict:
        """The message as the chat template wants it (``developer`` is OpenAI's new name
        for the system message)."""
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool | None = Field(default=None, strict=True)
    include_obfuscation: bool | None = None  # an OpenAI-side detail: ignored


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]


TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT, strict=True)]


class ChatRequest(BaseModel):
    """The accepted part of OpenAI's chat-completions request (anything else is refused)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=32)
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, strict=True)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, strict=True)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64, strict=True)
    stop: (
        Annotated[str, Field(min_length=1, max_length=100)]
        | Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=4)]
        | None
    ) = None
    n: int | None = Field(default=None, ge=1, le=128, strict=True)
    stream: bool | None = Field(default=None, strict=True)
    stream_options: StreamOptions | None = None
    # known, honoured only at their neutral value (see ``unsupported``)
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, strict=True)
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    # metadata only (METADATA_FIELDS): accepted and ignored
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = Field(default=None, max_length=32)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    parallel_tool_calls: bool | None = None

    @property
    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class APIError(Exception):
    """A refusal with OpenAI's error body (``error_body``) and an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type, self.headers = type, headers or {}

    def body(self) -> dict:
        return error_body(self.message, param=self.param, code=self.code, type=self.type)


def error_body(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    type: str = "invalid_request_error",
) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``: the body of every refusal."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unsupported(request: ChatRequest) -> APIError | None:
    """The first thing ``request`` asks for that this server cannot honour, as a 400."""

    def refuse(param: str, why: str, code: str = "unsupported_value") -> APIError:
        return APIError(400, f"{param}: {why}", param=param, code=code)

    if request.n not in (None, 1):
        return refuse("n", f"this server writes one answer per request (n=1), not {request.n}")
    if request.logprobs:
        return refuse("logprobs", "log probabilities are not returned by this server")
    if request.top_logprobs:
        return refuse("top_logprobs", "log probabilities are not returned by this server")
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, MediaPart):
                    return refuse(
                        f"messages[{i}].content[{j}]",
                        f"'{part.type}' parts are not supported: the model reads text only",
                    )
    if request.tools or request.functions:
        name = "tools" if request.tools else "functions"
        return refuse(name, "tool calling is not supported by this server yet (chapter 12)")
    for name in ("tool_choice", "function_call"):
        if getattr(request, name) not in (None, "none", "auto"):
            return refuse(name, "tool calling is not supported by this server yet (chapter 12)")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(request, name):
            return refuse(name, "repetition penalties are not supported: leave it at 0")
    if request.logit_bias:
        return refuse("logit_bias", "logit_bias is not supported by this server")
    if request.response_format is not None and request.response_format.type != "text":
        return refuse("response_format", "only the 'text' response format is supported")
    if request.modalities and set(request.modalities) != {"text"}:
        return refuse("modalities", "the model writes text only")
    if request.stream_options is not None and not request.stream:
        return refuse(
            "stream_options", "stream_options is only allowed when stream is true", "invalid_value"
        )
    return None


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "function-after"}
_CODES = {
    "extra_forbidden": "unknown_parameter",
    "missing": "missing_required_parameter",
    "json_invalid": "invalid_json",
}


def _param(loc: tuple) -> str | None:
    """OpenAI's spelling of a field's place: ``messages[0].content``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TYPE_NAMES or any(c in part for c in "[]-,"):
            continue  # pydantic names the branch of a union it tried: not a field
        else:
            out += f".{part}" if out else part
    return out or None


def validation_error(errors: list[dict]) -> APIError:
    """FastAPI's validation errors as one 400 in OpenAI's shape, naming the first field."""
    first = errors[0] if errors else {"loc": (), "type": "invalid", "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON", code="invalid_json")
    messages = []
    for error in errors[:5]:
        param = _param(tuple(error.get("loc", ())))
        text = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            text = "unrecognized request argument (not a field of this API)"
        messages.append(f"{param}: {text}" if param else text)
    kind = first.get("type", "")
    code = _CODES.get(kind) or ("invalid_type" if kind.endswith("_type") else "invalid_value")
    return APIError(400, "; ".join(messages), param=_param(tuple(first.get("loc", ()))), code=code)
