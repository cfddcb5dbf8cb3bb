"""Probing a library's API as it is installed: names, keywords, deprecations, warnings.

The one home of these mechanics, shared by ``helpers.migration`` (the table of old calls a
learner meets, each checked live) and the repository's drift check (``tools.drift``, which
runs them over every call the course makes).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import logging
import re
import tempfile
import textwrap
import warnings
from collections.abc import Iterable


def resolve(target: str):
    """The object at a dotted path, importing submodules as needed (AttributeError if gone)."""
    parts = target.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(".".join(parts[: i + 1]))
            except ImportError:
                raise AttributeError(f"{'.'.join(parts[:i])} has no attribute {part!r}") from None
    return obj


def _source(obj) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return ""


def _strings(node: ast.AST) -> str:
    """The constant text of a message expression (f-strings included)."""
    return " ".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


_WARN_CALLS = {"warn", "warning", "warning_once", "warning_advice", "deprecate"}


def _deprecation_messages(source: str, top_level_only: bool = False) -> list[str]:
    """Messages of the deprecation warnings a function's own code can raise."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    func = tree.body[0] if tree.body else None
    if top_level_only:
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            return []
        nodes = [stmt.value for stmt in func.body if isinstance(stmt, ast.Expr)]
    else:
        nodes = list(ast.walk(tree))
    found = []
    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name in _WARN_CALLS:
            text = " ".join(_strings(arg) for arg in node.args)
            if "deprecat" in text.lower():
                found.append(text)
    return found


def _docstring_entry(doc: str, name: str) -> str:
    """The text documenting parameter `name` in a Google/HF-style docstring."""
    lines = (doc or "").splitlines()
    pattern = re.compile(rf"^(\s*){re.escape(name)}\s*(\(|:)")
    for i, line in enumerate(lines):
        match = pattern.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        entry = [line]
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            entry.append(nxt)
        return "\n".join(entry)
    return ""


def _says_deprecated(text: str, keyword: str, others: Iterable[str], subject: bool) -> bool:
    """Whether a sentence of `text` says that `keyword` is deprecated.

    A sentence counts when "deprecat..." comes before any other parameter's name, or after
    `keyword` itself. `subject`: the text documents `keyword` (a docstring entry, a field's
    help), so a sentence that names no parameter before "deprecated" is about it.
    """
    others = [o for o in others if o != keyword]
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        hit = re.search(r"deprecat", sentence, re.IGNORECASE)
        if not hit:
            continue
        head = sentence[: hit.start()]
        own = re.search(rf"\b{re.escape(keyword)}\b", head)
        other = [m.start() for o in others for m in [re.search(rf"\b{re.escape(o)}\b", head)] if m]
        if own and (not other or own.start() < min(other)):
            return True
        if subject and not own and not other:
            return True
    return False


def _init_sources(obj) -> list[str]:
    """Source of the functions that run when `obj` is called (constructor chain for a class)."""
    if inspect.isclass(obj):
        sources = []
        for klass in obj.__mro__:
            if klass.__module__.split(".")[0] in ("builtins", "typing", "abc"):
                continue
            for method in ("__init__", "__post_init__"):
                if method in vars(klass):
                    sources.append(_source(vars(klass)[method]))
        return sources
    return [_source(inspect.unwrap(obj))] + [_source(obj)]


def signature(obj):
    """inspect.signature, or None for what has none (builtins, some C extensions)."""
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _fields(obj) -> dict[str, dataclasses.Field]:
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        return {f.name: f for f in dataclasses.fields(obj)}
    return {}


class _CapturedLogs(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# Extra arguments that make a config class constructible on any machine (a CPU without bf16).
_CONSTRUCT_BASE = {
    "transformers.TrainingArguments": {"use_cpu": True, "bf16": False, "report_to": "none"},
}


LIBRARY_LOGGERS = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")
"""The loggers whose warnings a check reads (the libraries whose API the course calls)."""


def capture_warnings(build, loggers: Iterable[str] = LIBRARY_LOGGERS):
    """``build()``'s result and the warnings and library log warnings it raised, shown nowhere.

    transformers logs some deprecations once per process (``warning_once``): that memory is
    cleared first, so a check sees them every time.
    """
    handler = _CapturedLogs()
    loggers = [logging.getLogger(name) for name in loggers]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
    once = getattr(logging.Logger, "warning_once", None)
    if hasattr(once, "cache_clear"):
        once.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = build()
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            logger.handlers = handlers
            logger.propagate = propagate
    return result, [str(w.message) for w in caught] + handler.messages


def _construct_warnings(obj, kwargs: dict) -> list[str]:
    """Warnings (and library log warnings) raised by ``obj(**kwargs)``; [] if it fails."""
    try:
        return capture_warnings(lambda: obj(**kwargs))[1]
    except Exception:  # noqa: BLE001 - a config that cannot be built here says nothing
        return []


def _cheap_to_construct(obj) -> bool:
    return inspect.isclass(obj) and obj.__name__.endswith(("Config", "Arguments"))


def _base_kwargs(obj) -> dict:
    kwargs: dict = {}
    for klass in getattr(obj, "__mro__", ()):
        kwargs.update(_CONSTRUCT_BASE.get(f"{klass.__module__.split('.')[0]}.{klass.__name__}", {}))
    params = signature(obj)
    if params and "output_dir" in params.parameters:
        kwargs["output_dir"] = tempfile.gettempdir()
    return kwargs


def check_keyword(obj, keyword: str, literal=dataclasses.MISSING) -> tuple[str, str] | None:
    """(kind, detail) when `keyword` is gone from or deprecated in callable `obj`, else None.

    `literal`: the value the course passes, when it is a literal; config classes are then
    built with it and their warnings read.
    """
    found = signature(obj)
    fields = _fields(obj)
    params = found.parameters if found else {}
    named = keyword in params and params[keyword].kind not in (
        inspect.Parameter.VAR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    if not named and keyword not in fields:
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if found is None:
            return None  # a builtin without a signature: nothing to read
        if not takes_kwargs:
            return ("unknown keyword", f"not a parameter of {_name(obj)}")
        popped = re.compile(rf"""kwargs(\.(pop|get)\(|\[)\s*["']{re.escape(keyword)}["']""")
        lines = [ln for src in _init_sources(obj) for ln in src.splitlines() if popped.search(ln)]
        if not lines:
            return None  # swallowed by **kwargs: cannot be told statically
        if any(re.search(r"\bBC\b|backward|deprecat", ln, re.IGNORECASE) for ln in lines):
            return ("deprecated", f"{_name(obj)} keeps it only for backward compatibility")
    # Deprecated? The field's help, the docstring, the constructor's own warnings.
    others = set(params) | set(fields)
    for klass in getattr(obj, "__mro__", (obj,)):  # a subclass may re-declare a field
        field = _fields(klass).get(keyword)
        help_text = str(field.metadata.get("help", "")) if field else ""
        if _says_deprecated(help_text, keyword, others, subject=True):
            return ("deprecated", _first_sentence(help_text))
        entry = _docstring_entry(klass.__doc__ or "", keyword).split(":", 1)[-1]
        if _says_deprecated(entry, keyword, others, subject=True):
            return ("deprecated", _first_sentence(entry))
    for source in _init_sources(obj):
        for message in _deprecation_messages(source):
            if _says_deprecated(message, keyword, others, subject=False):
                return ("deprecated", _first_sentence(message))
    if literal is not dataclasses.MISSING and _cheap_to_construct(obj):
        for message in _construct_warnings(obj, {**_base_kwargs(obj), keyword: literal}):
            if _says_deprecated(message, keyword, others, subject=False):
                return ("deprecated", _first_sentence(message))
    return None


def check_deprecated_callable(obj) -> str | None:
    """Why calling `obj` itself is deprecated (PEP 702 marker or a warning it always raises)."""
    marker = getattr(obj, "__deprecated__", None)
    if marker:
        return _first_sentence(str(marker))
    if inspect.isfunction(inspect.unwrap(obj)) or inspect.ismethod(obj):
        messages = _deprecation_messages(_source(inspect.unwrap(obj)), top_level_only=True)
        if messages:
            return _first_sentence(messages[0])
    return None


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:160]


def _name(obj) -> str:
    return getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))


def named_parameter(obj, keyword: str) -> bool:
    """Does `obj` take `keyword` by name (not only through ``**kwargs``)?"""
    found = signature(obj)
    return bool(
        found
        and keyword in found.parameters
        and found.parameters[keyword].kind is not inspect.Parameter.VAR_KEYWORD
    )
