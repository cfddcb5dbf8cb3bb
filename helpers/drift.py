"""Does every library name and keyword the course uses still exist, and is any deprecated?

``python -m helpers.drift`` finds the usages by parsing ``helpers/`` and the chapter
notebooks with ``ast`` (no hand-kept list of names to forget): every name imported
from torch, transformers, trl, peft, datasets, accelerate or bitsandbytes, every
attribute reached from them, and every call with its keyword names. It then checks
each one against the libraries installed in the running interpreter:

- the name still resolves (``trl.SFTConfig``, ``transformers.AutoModelForCausalLM``);
- each keyword is still a parameter (a signature parameter or a dataclass field, or a
  key the function pops from ``**kwargs``);
- nothing is deprecated: a dataclass field or docstring that says so, a deprecation
  warning in the function's own code, or a warning raised when a config class is
  built with the literal value the course passes (cheap to construct).

Calls on instances (``tokenizer.apply_chat_template(...)``) have no static type, so a
short hand-kept table (``METHODS``) says which library method a method name means.

``make test-latest`` runs this in a virtual environment with the newest releases and
writes the report under ``drift/``; ``tests/test_drift.py`` runs it against the pins.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import importlib
import importlib.metadata
import inspect
import json
import logging
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")
DRIFT_DIR = ROOT / "drift"
# Files that spell old APIs on purpose (to show and test them): not scanned.
NOT_SCANNED = ("helpers/migration.py", "helpers/drift.py")

# Deprecations the course uses knowingly, each with the reason; check() leaves them out of
# its problems, and a test fails when the library stops calling them deprecated (then the
# entry, and the reason to keep the old path, should go).
ACKNOWLEDGED = {
    ("torch.onnx.export", "dynamic_axes"): (
        "chapter 08 exports with the TorchScript path (dynamo=False), deprecated since torch "
        "2.9, where dynamic_axes is the only way to name dynamic dimensions: it needs nothing "
        "beyond torch and exports in seconds, where the dynamo path needs onnxscript and takes "
        "minutes on 2 CPU cores (helpers/export/onnx.py)"
    ),
}

# Method calls on objects whose type ast cannot know: method name -> the library method
# it means in the course's code. Ambiguous names (train, save_pretrained, ...) stay out.
METHODS = {
    "apply_chat_template": "transformers.PreTrainedTokenizerBase.apply_chat_template",
    "batch_decode": "transformers.PreTrainedTokenizerBase.batch_decode",
    "generate": "transformers.GenerationMixin.generate",
    "get_memory_footprint": "transformers.PreTrainedModel.get_memory_footprint",
    "set_attn_implementation": "transformers.PreTrainedModel.set_attn_implementation",
    "get_input_embeddings": "transformers.PreTrainedModel.get_input_embeddings",
    "get_output_embeddings": "transformers.PreTrainedModel.get_output_embeddings",
    "enable_input_require_grads": "transformers.PreTrainedModel.enable_input_require_grads",
    "gradient_checkpointing_enable": "transformers.PreTrainedModel.gradient_checkpointing_enable",
    "activation_checkpointing_enable": (
        "transformers.PreTrainedModel.activation_checkpointing_enable"
    ),
    "print_trainable_parameters": "peft.PeftModel.print_trainable_parameters",
    "get_nb_trainable_parameters": "peft.PeftModel.get_nb_trainable_parameters",
    "get_base_model": "peft.PeftModel.get_base_model",
    "merge_and_unload": "peft.tuners.tuners_utils.BaseTuner.merge_and_unload",
    "unload": "peft.tuners.tuners_utils.BaseTuner.unload",
    "set_adapter": "peft.PeftModel.set_adapter",
    "disable_adapter": "peft.PeftModel.disable_adapter",
    "save_model": "transformers.Trainer.save_model",
    "remove_callback": "transformers.Trainer.remove_callback",
    "add_callback": "transformers.Trainer.add_callback",
}

# Functions that hand their **kwargs to another callable: where to check the keywords.
FORWARDS = {
    "transformers.GenerationMixin.generate": "transformers.GenerationConfig",
}
_AUTO_MODEL = re.compile(r"^transformers\.AutoModel\w*\.from_pretrained$")
_AUTO_TOKENIZER = re.compile(r"^transformers\.AutoTokenizer\.from_pretrained$")


def _forwarded(target: str) -> str | None:
    if target in FORWARDS:
        return FORWARDS[target]
    if _AUTO_MODEL.match(target):
        return "transformers.PreTrainedModel.from_pretrained"
    return None


@dataclass(frozen=True)
class Usage:
    """One library name the course uses, with the keywords it passes where it is called."""

    target: str  # dotted path: "trl.SFTConfig", "transformers.AutoModelForCausalLM.from_pretrained"
    where: str  # "helpers/training.py:140" or "notebooks/00_tldr.ipynb cell 7"
    keywords: tuple[str, ...] = ()
    literals: tuple[tuple[str, object], ...] = ()  # keyword -> literal value, when it is one
    call: bool = False

    @property
    def library(self) -> str:
        return self.target.split(".", 1)[0]


@dataclass(frozen=True)
class Problem:
    target: str
    keyword: str | None
    kind: str  # "missing", "unknown keyword", "deprecated"
    detail: str
    where: tuple[str, ...] = ()

    @property
    def library(self) -> str:
        return self.target.split(".", 1)[0]

    def line(self) -> str:
        name = f"{self.target}({self.keyword}=)" if self.keyword else self.target
        return f"{name}: {self.kind}: {self.detail}"


# --------------------------------------------------------------------------- discovery


def _strip_magics(source: str) -> str:
    """A code cell as Python: IPython magics and shell lines become blank lines."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append("" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def course_sources(root: Path = ROOT) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(file label, [(place label, python source), ...])] for helpers/ and notebooks/.

    A notebook's cells share one list, so a name imported in one cell resolves in the next.
    """
    files: list[tuple[str, list[tuple[str, str]]]] = []
    for path in sorted((root / "helpers").rglob("*.py")):
        label = path.relative_to(root).as_posix()
        if label not in NOT_SCANNED:
            files.append((label, [(label, path.read_text(encoding="utf-8"))]))
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        label = path.relative_to(root).as_posix()
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        parts = [
            (f"{label} cell {i}", _strip_magics("".join(cell["source"])))
            for i, cell in enumerate(cells)
            if cell["cell_type"] == "code"
        ]
        files.append((label, parts))
    return files


def _walk_scope(node: ast.AST):
    """ast.walk that does not enter nested functions (they have their own imports)."""
    todo = list(ast.iter_child_nodes(node))
    while todo:
        child = todo.pop()
        yield child
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(child))


def _imports(trees: Iterable[ast.AST], libraries: Sequence[str]) -> dict[str, str]:
    """Local name -> dotted library path, for the imports of a library at these scopes' level."""
    aliases: dict[str, str] = {}
    for tree in trees:
        for node in _walk_scope(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] not in libraries:
                        continue
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] not in libraries:
                    continue
                for alias in node.names:
                    if alias.name != "*":
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _other_imports(trees: Iterable[ast.AST]) -> set[str]:
    """Names bound by imports of anything else (the course's own modules, the stdlib)."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _dict_keys(scope: ast.AST) -> dict[str, set[str]]:
    """Variable -> the string keys it is given in `scope` (a dict literal, dict(k=...),
    ``d["k"] = ...`` or ``d.update(k=...)``): what ``f(**d)`` passes."""
    keys: dict[str, set[str]] = {}

    def literal_keys(value: ast.AST) -> set[str] | None:
        if isinstance(value, ast.Dict):
            return {
                k.value
                for k in value.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "dict"
        ):
            return {k.arg for k in value.keywords if k.arg}
        return None

    for node in ast.walk(scope):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found = literal_keys(node.value) if node.value is not None else None
            for target in targets:
                if isinstance(target, ast.Name) and found is not None:
                    keys.setdefault(target.id, set()).update(found)
                elif (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and isinstance(target.slice, ast.Constant)
                    and isinstance(target.slice.value, str)
                ):
                    keys.setdefault(target.value.id, set()).add(target.slice.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("update", "setdefault")
            and isinstance(node.func.value, ast.Name)
        ):
            name = node.func.value.id
            if node.func.attr == "setdefault" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    keys.setdefault(name, set()).add(first.value)
            else:
                keys.setdefault(name, set()).update(k.arg for k in node.keywords if k.arg)
                for arg in node.args:
                    keys.setdefault(name, set()).update(literal_keys(arg) or ())
    return keys


def _subclasses(tree: ast.AST, aliases: dict[str, str], libraries: Sequence[str]):
    """Course classes built on a library class, and functions that return one.

    {local name: (library class, keywords its own __init__ takes)}: a call of the course's
    class (or of the factory's result) passes its other keywords to the library class.
    """
    found: dict[str, tuple[str, frozenset[str]]] = {}
    factories: dict[str, str] = {}

    def visit(node: ast.AST, scope: dict[str, str], function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = {**scope, **_imports([child], libraries)}
                visit(child, inner, child.name)
                continue
            if isinstance(child, ast.ClassDef):
                for base in child.bases:
                    target = _resolve_in(base, scope)
                    if target:
                        own = set()
                        for item in child.body:
                            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                                own = {a.arg for a in item.args.args + item.args.kwonlyargs}
                        found[child.name] = (target, frozenset(own - {"self"}))
                        break
            if isinstance(child, ast.Return) and isinstance(child.value, ast.Name) and function:
                factories[function] = child.value.id
            visit(child, scope, function)

    visit(tree, aliases, None)
    for function, name in factories.items():
        if name in found:
            found[f"{function}()"] = found[name]
    return found


def _resolve_in(node: ast.AST, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve_in(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, aliases, local, place, tree, libraries, subclasses=None):
        self.subclasses = subclasses or {}
        self.aliases = aliases
        self.libraries = set(libraries)
        self.local = local
        self.place = place
        self.usages: list[Usage] = []
        self.scopes: list[dict[str, set[str]]] = [_dict_keys(tree)]

    def resolve(self, node: ast.AST) -> str | None:
        return _resolve_in(node, self.aliases)

    def _course_subclass(self, func: ast.AST) -> tuple[str, frozenset[str]] | None:
        if isinstance(func, ast.Name):
            return self.subclasses.get(func.id)
        if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and not func.args:
            return self.subclasses.get(f"{func.func.id}()")
        return None

    def where(self, node: ast.AST) -> str:
        return f"{self.place}:{node.lineno}" if " cell " not in self.place else self.place

    def visit_FunctionDef(self, node):  # a function has its own imports and **kwargs dicts
        self.scopes.append(_dict_keys(node))
        outer = self.aliases
        self.aliases = {**outer, **_imports([node], self.libraries)}
        self.generic_visit(node)
        self.aliases = outer
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] in self.libraries:
                self.usages.append(Usage(alias.name, self.where(node)))

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module and node.module.split(".")[0] in self.libraries:
            for alias in node.names:
                if alias.name != "*":
                    self.usages.append(Usage(f"{node.module}.{alias.name}", self.where(node)))

    def visit_Name(self, node):
        target = self.aliases.get(node.id)
        if target and "." in target:
            self.usages.append(Usage(target, self.where(node)))

    def visit_Attribute(self, node):
        target = self.resolve(node)
        if target:
            self.usages.append(Usage(target, self.where(node)))
        else:
            self.generic_visit(node)

    def _keywords(self, node: ast.Call) -> tuple[list[str], list[tuple[str, object]]]:
        names, literals = [], []
        for kw in node.keywords:
            if kw.arg is not None:
                names.append(kw.arg)
                try:
                    literals.append((kw.arg, ast.literal_eval(kw.value)))
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    pass
            elif isinstance(kw.value, ast.Dict):
                for key in kw.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        names.append(key.value)
            elif isinstance(kw.value, ast.Name):
                for scope in reversed(self.scopes):
                    if kw.value.id in scope:
                        names.extend(sorted(scope[kw.value.id]))
                        break
        return names, literals

    def visit_Call(self, node):
        target = self.resolve(node.func)
        own: frozenset[str] = frozenset()
        if target is None and self._course_subclass(node.func):
            target, own = self._course_subclass(node.func)
        if (
            target is None
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in METHODS
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id in self.local)
        ):
            target = METHODS[node.func.attr]
            self.visit(node.func.value)
        elif target is None:
            self.visit(node.func)
        if target is not None:
            names, literals = self._keywords(node)
            names = [n for n in names if n not in own]
            self.usages.append(
                Usage(target, self.where(node), tuple(names), tuple(literals), call=True)
            )
        for arg in node.args:
            self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)


def find_usages(
    files: list[tuple[str, list[tuple[str, str]]]] | None = None,
    libraries: Sequence[str] = LIBRARIES,
) -> list[Usage]:
    """Every library usage in `files` (default: the course's helpers and notebooks)."""
    files = course_sources() if files is None else files
    usages: list[Usage] = []
    for _label, parts in files:
        trees = []
        for place, source in parts:
            try:
                trees.append((place, ast.parse(source)))
            except SyntaxError as err:
                raise SyntaxError(f"{place} does not parse: {err}") from err
        aliases = _imports((t for _, t in trees), libraries)
        local = _other_imports(t for _, t in trees) - set(aliases)
        subclasses: dict[str, tuple[str, frozenset[str]]] = {}
        for _place, tree in trees:
            subclasses.update(_subclasses(tree, aliases, libraries))
        for place, tree in trees:
            finder = _Finder(aliases, local, place, tree, libraries, subclasses)
            finder.visit(tree)
            usages.extend(finder.usages)
    return usages


# --------------------------------------------------------------------------- checking


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


def _signature(obj):
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


def capture_warnings(build):
    """``build()``'s result and the warnings and library log warnings it raised, shown nowhere.

    transformers logs some deprecations once per process (``warning_once``): that memory is
    cleared first, so a check sees them every time.
    """
    handler = _CapturedLogs()
    loggers = [logging.getLogger(name) for name in LIBRARIES]
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
    params = _signature(obj)
    if params and "output_dir" in params.parameters:
        kwargs["output_dir"] = tempfile.gettempdir()
    return kwargs


def check_keyword(obj, keyword: str, literal=dataclasses.MISSING) -> tuple[str, str] | None:
    """(kind, detail) when `keyword` is gone from or deprecated in callable `obj`, else None.

    `literal`: the value the course passes, when it is a literal; config classes are then
    built with it and their warnings read.
    """
    signature = _signature(obj)
    fields = _fields(obj)
    params = signature.parameters if signature else {}
    named = keyword in params and params[keyword].kind not in (
        inspect.Parameter.VAR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    if not named and keyword not in fields:
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if signature is None:
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


def check(usages: Iterable[Usage]) -> list[Problem]:
    """Problems of the usages in the running interpreter's libraries (one per name/keyword)."""
    grouped: dict[str, list[Usage]] = {}
    for usage in usages:
        grouped.setdefault(usage.target, []).append(usage)
    problems: list[Problem] = []
    for target, group in sorted(grouped.items()):
        places = tuple(sorted({u.where for u in group}))
        try:
            obj = resolve(target)
        except (AttributeError, ImportError) as err:
            problems.append(Problem(target, None, "missing", str(err), places))
            continue
        reason = check_deprecated_callable(obj) if any(u.call for u in group) else None
        if reason:
            problems.append(Problem(target, None, "deprecated", reason, places))
        forward = _forwarded(target)
        keywords: dict[str, list[Usage]] = {}
        for usage in group:
            for keyword in usage.keywords:
                keywords.setdefault(keyword, []).append(usage)
        for keyword, kw_usages in sorted(keywords.items()):
            literal = dataclasses.MISSING
            for usage in kw_usages:
                values = dict(usage.literals)
                if keyword in values:
                    literal = values[keyword]
                    break
            found = check_keyword(obj, keyword, literal)
            if found and found[0] == "unknown keyword" and forward:
                found = check_keyword(resolve(forward), keyword, literal)
            elif found is None and forward and not _named_parameter(obj, keyword):
                found = check_keyword(resolve(forward), keyword, literal)
            if found and (target, keyword) not in ACKNOWLEDGED:
                where = tuple(sorted({u.where for u in kw_usages}))
                problems.append(Problem(target, keyword, found[0], found[1], where))
    return problems


def _named_parameter(obj, keyword: str) -> bool:
    signature = _signature(obj)
    return bool(
        signature
        and keyword in signature.parameters
        and signature.parameters[keyword].kind is not inspect.Parameter.VAR_KEYWORD
    )


# --------------------------------------------------------------------------- report


def versions(libraries: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    found = {}
    for name in libraries:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def newest_releases(
    libraries: Sequence[str] = LIBRARIES, python: str = sys.executable
) -> dict[str, str | None]:
    """The newest release of each library on the package index (``pip index versions``);
    None where the index cannot be asked. Shows when pip settled for an older release."""
    newest: dict[str, str | None] = {}
    for name in libraries:
        proc = subprocess.run(
            [python, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
            capture_output=True,
            text=True,
        )
        match = re.match(rf"{re.escape(name)} \(([^)]+)\)", proc.stdout, re.IGNORECASE)
        newest[name] = match.group(1) if match and proc.returncode == 0 else None
    return newest


def verdicts(
    usages: Sequence[Usage], problems: Sequence[Problem], seen: dict[str, str | None]
) -> list[str]:
    """One line per library: "trl 1.16.0: OK (12 names, 40 keywords)" or its problems."""
    lines = []
    for library, version in seen.items():
        mine = [u for u in usages if u.library == library]
        names = len({u.target for u in mine})
        keywords = len({(u.target, k) for u in mine for k in u.keywords})
        bad = [p for p in problems if p.library == library]
        label = f"{library} {version or '(not installed)'}"
        if bad:
            plural = "s" if len(bad) > 1 else ""
            lines.append(
                f"{label}: {len(bad)} problem{plural}: " + "; ".join(p.line() for p in bad)
            )
        else:
            lines.append(f"{label}: OK ({names} names, {keywords} keywords checked)")
    return lines


# Tests that compare the installed versions with the pins: they fail by design in an
# environment of newer releases, so `--tests` leaves them out (and the report says so).
PIN_TESTS = (
    "tests/test_doctor.py::test_the_real_pins_are_all_installed_here",
    "tests/test_doctor.py::test_this_environment_is_healthy",
    "tests/test_project.py::test_installed_versions_match_the_pins",
    "tests/test_doctor.py::test_an_installed_course_reads_its_pins_from_its_metadata",
)


def _pytest(python: str, args: list[str], xml: Path) -> tuple[int, dict]:
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    proc = subprocess.run(command + args, cwd=ROOT)  # pytest's own output shows its progress
    if not xml.exists():
        return proc.returncode, {}
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root[0]
    failed = []
    for case in suite.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = case.get("classname", "").replace(".", "/")
            failed.append(f"{module}.py::{case.get('name')}")
    counts = {
        "tests": int(suite.get("tests", 0)),
        "failures": int(suite.get("failures", 0)) + int(suite.get("errors", 0)),
        "skipped": int(suite.get("skipped", 0)),
        "failed": failed,
    }
    return proc.returncode, counts


def run_unit_tests(python: str = sys.executable, baseline: str | None = None) -> dict:
    """The helpers' unit tests (no notebooks, no slow or browser tests): counts and failures.

    `baseline`: the Python of the pinned environment; the tests that fail here are run there
    too, to tell drift from a failure the pins share.
    """
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "not slow", "--ignore=tests/browser", "tests"]
        args += [f"--deselect={test}" for test in PIN_TESTS]
        code, counts = _pytest(python, args, Path(tmp) / "latest.xml")
        summary: dict = {"exit_code": code, **counts, "deselected": list(PIN_TESTS)}
        if baseline and counts.get("failed"):
            _, pinned = _pytest(baseline, counts["failed"], Path(tmp) / "pinned.xml")
            summary["also_fail_with_pins"] = pinned.get("failed", [])
        return summary


def unit_test_line(result: dict) -> str:
    if "tests" not in result:
        return f"unit tests: did not run (pytest exit code {result['exit_code']})"
    passed = result["tests"] - result["failures"] - result["skipped"]
    line = f"unit tests: {passed} passed, {result['failures']} failed, {result['skipped']} skipped"
    shared = set(result.get("also_fail_with_pins", ()))
    if result["failed"]:
        named = [f"{t} (fails with the pins too)" if t in shared else t for t in result["failed"]]
        line += ": " + ", ".join(named)
    return line


def write_report(
    out: Path,
    seen: dict[str, str | None],
    lines: list[str],
    problems: Sequence[Problem],
    usages: Sequence[Usage],
    tests: dict | None,
    when: datetime.datetime,
    newest: dict[str, str | None] | None = None,
) -> tuple[Path, Path]:
    """drift/report.json and drift/report.md: what was checked, against which versions."""
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "date": when.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": seen,
        "newest_on_index": newest,
        "verdicts": lines,
        "problems": [dataclasses.asdict(p) for p in problems],
        "checked": {
            "names": len({u.target for u in usages}),
            "keywords": len({(u.target, k) for u in usages for k in u.keywords}),
        },
        "unit_tests": tests,
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    md = [
        "# Drift report",
        "",
        f"Run on {when:%Y-%m-%d %H:%M} UTC with Python {data['python']} by `make test-latest`.",
        "Regenerate it with that command; do not edit it by hand.",
        "",
        "| library | version checked | newest on the index | verdict |",
        "|---|---|---|---|",
    ]
    for (library, version), line in zip(seen.items(), lines, strict=True):
        latest = (newest or {}).get(library) or "not asked"
        md.append(f"| {library} | {version or '-'} | {latest} | {line.split(': ', 1)[1]} |")
    md.append("")
    held = [
        f"{library} {version} (newest: {(newest or {}).get(library)})"
        for library, version in seen.items()
        if version and (newest or {}).get(library) not in (None, version.split("+")[0])
    ]
    if held:
        why = []
        if any(h.startswith("torch ") for h in held):
            why.append(
                "`make test-latest` keeps torch at its pin unless `LATEST_TORCH` says otherwise"
                " (PyPI's newer Linux torch wheels are CUDA builds of several GB)"
            )
        if any(not h.startswith("torch ") for h in held):
            why.append("pip settled for an older release to satisfy another package's bound")
        md += [f"Older than the index's newest: {', '.join(held)}. {'; '.join(why)}.", ""]
    if tests is not None:
        md += [unit_test_line(tests), ""]
        if tests.get("deselected"):
            md += ["Left out (they compare the installed versions with the pins):", ""]
            md += [f"- `{test}`" for test in tests["deselected"]] + [""]
    if problems:
        md += ["## Problems", ""]
        for problem in problems:
            md.append(f"- `{problem.line()}` (used in {', '.join(problem.where)})")
        md.append("")
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", action="store_true", help="also run the helpers' unit tests")
    parser.add_argument(
        "--baseline", help="Python of the pinned environment: rerun failing tests there"
    )
    parser.add_argument("--report", type=Path, help="write report.md and report.json here")
    parser.add_argument(
        "--newest", action="store_true", help="ask the package index for the newest releases"
    )
    args = parser.parse_args(argv)
    usages = find_usages()
    problems = check(usages)
    seen = versions()
    lines = verdicts(usages, problems, seen)
    tests = run_unit_tests(baseline=args.baseline) if args.tests else None
    newest = newest_releases() if args.newest else None
    for line in lines:
        print(line)
    if tests is not None:
        print(unit_test_line(tests))
    if args.report:
        when = datetime.datetime.now(datetime.timezone.utc)
        written = write_report(args.report, seen, lines, problems, usages, tests, when, newest)
        for path in written:
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    new_failures = set((tests or {}).get("failed", ())) - set(
        (tests or {}).get("also_fail_with_pins", ())
    )
    broken = tests is not None and ("tests" not in tests or bool(new_failures))
    failed = bool(problems) or broken
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
