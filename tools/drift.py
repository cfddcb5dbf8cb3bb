"""Does every library name and keyword the course uses still exist, and is any deprecated?

``python -m tools.drift`` finds the usages by parsing ``helpers/`` and the chapter
notebooks with ``ast`` (no hand-kept list of names to forget): every name imported
from a library of ``LIBRARIES`` (each pinned library the course's code imports), every
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
Command lines the course builds (``[sys.executable, "-m", "accelerate.commands.launch",
"--num_processes", ...]``) are checked against the library's own argument parser
(``CLI_PARSERS``), and the config files it writes for a library against the class that
reads them (``CONFIG_SCHEMAS``).

``make test-latest`` runs this in a virtual environment with the newest releases and
writes the report under ``drift/``; ``--report drift`` without ``--newest`` writes it for
the installed pins (the static check only; ``--count-tests`` adds the size of the unit
test suite without running it). The report carries a fingerprint of the pins and of the
names it checked; ``tests/test_drift.py`` fails when the checkout's differs, and runs the
check itself against the pins.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import datetime
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers import api, pins, repo

ROOT = repo.require_checkout("python -m tools.drift")
# Every pinned library that helpers/ or a notebook imports (a test keeps this list whole),
# by import name, and pydantic, which fastapi brings and helpers/serving calls directly.
# Not here: numpy, yaml, psutil, IPython, nbformat and packaging (imported, but not pinned:
# they come with the libraries above) and litgpt (chapter 11's own environment).
LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "safetensors",
    "gguf",
    "matplotlib",
    "ipywidgets",
    "tensorboard",
    "sklearn",
    "sacrebleu",
    "rouge_score",
    "onnx",
    "onnxruntime",
    "fastapi",
    "uvicorn",
    "pydantic",
    "openai",
    "nbval",
)
# Import name -> distribution name, where they differ (the pins and the index know the latter).
DISTRIBUTIONS = {"sklearn": "scikit-learn", "rouge_score": "rouge-score"}
DRIFT_DIR = ROOT / "drift"
REQUIREMENTS = ROOT / "requirements.txt"
# How to regenerate drift/report.md and drift/report.json (named by the test that fails
# when the report no longer matches the pins or the names the course uses).
REGENERATE = (
    "`make test-latest` (the newest releases, with the unit tests), or for the pins: "
    "`HF_HUB_OFFLINE=1 .venv/bin/python -m tools.drift --count-tests --report drift`"
)
# Time limits of the commands this module starts (seconds).
INDEX_TIMEOUT = 60  # one `pip index versions NAME`
COLLECT_TIMEOUT = 900  # `pytest --collect-only` of the unit tests
TESTS_TIMEOUT = 3 * 3600  # the unit tests themselves (about half an hour on 2 CPU cores)
# Files that spell old APIs on purpose (to show and test them): not scanned.
NOT_SCANNED = ("helpers/migration.py", "tools/drift.py")

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
# Library modules the course starts as ``python -m MODULE --option ...``: the function that
# builds the module's argument parser, which its options are checked against.
CLI_PARSERS = {
    "accelerate.commands.launch": "accelerate.commands.launch.launch_command_parser",
    "torch.distributed.run": "torch.distributed.run.get_args_parser",
}

# Functions of the course that return the contents of a library's config file: (file,
# function) -> the class that reads that file (its fields are the keys it knows).
CONFIG_SCHEMAS = {
    ("helpers/launch.py", "accelerate_config"): (
        "accelerate.commands.config.config_args.ClusterConfig"
    ),
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
    cli: bool = False  # a module started as `python -m target`; keywords are its --options

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
        if self.keyword and self.keyword.startswith("-"):
            name = f"python -m {self.target} {self.keyword}"
        else:
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


def _list_vars(scope: ast.AST) -> dict[str, list[ast.expr]]:
    """Variable -> the items of the list literal it is given in `scope` (``run = [...]``)."""
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = list(node.value.elts)
    return found


def _text(node: ast.AST) -> str | None:
    """A string constant, or the constant start of an f-string (``f"--port={p}"``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _text(node.values[0])
    return None


def _command_lines(items: Sequence[ast.expr], libraries: Sequence[str]):
    """(module, [--option, ...]) for each ``"-m", "library.module"`` in a command's items:
    the options are the ``--`` strings after the module, up to the next ``-m``."""
    texts = [_text(item) for item in items]
    for i, text in enumerate(texts[:-1]):
        module = items[i + 1]
        if not (
            text == "-m" and isinstance(module, ast.Constant) and isinstance(module.value, str)
        ):
            continue
        if module.value.split(".")[0] not in libraries:
            continue
        options = []
        for later in texts[i + 2 :]:
            if later == "-m":
                break
            if later and later.startswith("--"):
                options.append(later.split("=", 1)[0])
        yield module.value, options


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
        self.lists: list[dict[str, list[ast.expr]]] = [_list_vars(tree)]

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
        self.lists.append(_list_vars(node))
        outer = self.aliases
        self.aliases = {**outer, **_imports([node], self.libraries)}
        self._config_file(node)
        self.generic_visit(node)
        self.aliases = outer
        self.lists.pop()
        self.scopes.pop()

    def _config_file(self, node) -> None:
        """The keys of a config file the course writes for a library (``CONFIG_SCHEMAS``)."""
        schema = CONFIG_SCHEMAS.get((self.place, node.name))
        if schema is None or schema.split(".")[0] not in self.libraries:
            return
        for ret in ast.walk(node):
            if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                names, literals = [], []
                for key, value in zip(ret.value.keys, ret.value.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        names.append(key.value)
                        try:
                            literals.append((key.value, ast.literal_eval(value)))
                        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                            pass
                usage = Usage(schema, self.where(ret), tuple(names), tuple(literals), call=True)
                self.usages.append(usage)

    def visit_List(self, node):  # a command line: [sys.executable, "-m", "library.module", ...]
        items: list[ast.expr] = []
        for item in node.elts:
            if isinstance(item, ast.Starred) and isinstance(item.value, ast.Name):
                for scope in reversed(self.lists):
                    if item.value.id in scope:
                        items.extend(scope[item.value.id])
                        break
            else:
                items.append(item)
        for module, options in _command_lines(items, self.libraries):
            self.usages.append(Usage(module, self.where(node), tuple(options), cli=True))
        self.generic_visit(node)

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


def _options(parser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def check_command_line(module: str, usages: Sequence[Usage]) -> list[Problem]:
    """Problems of ``python -m module --option ...``: the module, then each option against
    the module's own argument parser (``CLI_PARSERS``): gone, or its help says deprecated."""
    places = tuple(sorted({u.where for u in usages}))
    try:
        api.resolve(module)
    except (AttributeError, ImportError) as err:
        return [Problem(module, None, "missing", str(err), places)]
    if module not in CLI_PARSERS:
        detail = f"no argument parser known for `python -m {module}`: add it to CLI_PARSERS"
        return [Problem(module, None, "unchecked command line", detail, places)]
    try:
        parser = api.resolve(CLI_PARSERS[module])()
    except Exception as err:  # noqa: BLE001 - a parser that cannot be built is the finding
        detail = f"{CLI_PARSERS[module]}() failed: {type(err).__name__}: {err}"
        return [Problem(module, None, "missing", detail, places)]
    options = _options(parser)
    problems = []
    used: dict[str, list[Usage]] = {}
    for usage in usages:
        for option in usage.keywords:
            used.setdefault(option, []).append(usage)
    for option, option_usages in sorted(used.items()):
        where = tuple(sorted({u.where for u in option_usages}))
        action = options.get(option)
        if action is None:
            detail = f"not an option of `python -m {module}`"
            problems.append(Problem(module, option, "unknown option", detail, where))
        elif action.help and re.search(r"deprecat", str(action.help), re.IGNORECASE):
            problems.append(Problem(module, option, "deprecated", str(action.help)[:160], where))
    return problems


def check(usages: Iterable[Usage]) -> list[Problem]:
    """Problems of the usages in the running interpreter's libraries (one per name/keyword)."""
    grouped: dict[str, list[Usage]] = {}
    commands: dict[str, list[Usage]] = {}
    for usage in usages:
        (commands if usage.cli else grouped).setdefault(usage.target, []).append(usage)
    problems: list[Problem] = []
    for module, group in sorted(commands.items()):
        problems.extend(check_command_line(module, group))
    for target, group in sorted(grouped.items()):
        places = tuple(sorted({u.where for u in group}))
        try:
            obj = api.resolve(target)
        except (AttributeError, ImportError) as err:
            problems.append(Problem(target, None, "missing", str(err), places))
            continue
        reason = api.check_deprecated_callable(obj) if any(u.call for u in group) else None
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
            found = api.check_keyword(obj, keyword, literal)
            if found and found[0] == "unknown keyword" and forward:
                found = api.check_keyword(api.resolve(forward), keyword, literal)
            elif found is None and forward and not api.named_parameter(obj, keyword):
                found = api.check_keyword(api.resolve(forward), keyword, literal)
            if found and (target, keyword) not in ACKNOWLEDGED:
                where = tuple(sorted({u.where for u in kw_usages}))
                problems.append(Problem(target, keyword, found[0], found[1], where))
    return problems


# --------------------------------------------------------------------------- report


def distribution(library: str) -> str:
    """The distribution that installs import name `library` (sklearn: scikit-learn)."""
    return DISTRIBUTIONS.get(library, library)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def versions(libraries: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    found = {}
    for name in libraries:
        try:
            found[name] = importlib.metadata.version(distribution(name))
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def pinned(
    libraries: Sequence[str] = LIBRARIES, requirements: Path = REQUIREMENTS
) -> dict[str, str | None]:
    """{library: its pin in requirements.txt} (None: not pinned there)."""
    found = {_normal(name): version for name, version in pins.read_pins(requirements).items()}
    return {library: found.get(_normal(distribution(library))) for library in libraries}


def third_party_imports(root: Path = ROOT) -> dict[str, list[str]]:
    """{top-level module: [files]} of what helpers/ and the notebooks import from outside
    the standard library and the course itself."""
    found: dict[str, set[str]] = {}
    for label, parts in course_sources(root):
        for _place, source in parts:
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "helpers":
                        found.setdefault(top, set()).add(label)
    return {top: sorted(files) for top, files in sorted(found.items())}


# --------------------------------------------------------------------------- fingerprint


def checked_api(usages: Iterable[Usage]) -> list[str]:
    """The names, keywords and options the check covers, sorted: ``trl.SFTConfig``,
    ``trl.SFTConfig(max_length=)``, ``python -m accelerate.commands.launch --num_processes``."""
    found = set()
    for usage in usages:
        if usage.cli:
            found.add(f"python -m {usage.target}")
            found.update(f"python -m {usage.target} {option}" for option in usage.keywords)
        else:
            found.add(usage.target)
            found.update(f"{usage.target}({keyword}=)" for keyword in usage.keywords)
    return sorted(found)


def fingerprint(
    usages: Iterable[Usage],
    libraries: Sequence[str] = LIBRARIES,
    requirements: Path = REQUIREMENTS,
) -> dict:
    """What a report was made for: the pins of the checked libraries (requirements.txt) and
    the API names the course uses (``checked_api``), and a sha256 over both.

    Cheap (no library is imported): ``tests/test_drift.py`` recomputes it from the checkout
    and fails when the committed report's differs."""
    pins_now = [
        f"{distribution(library)}=={version}"
        if version
        else f"{distribution(library)} (not pinned)"
        for library, version in pinned(libraries, requirements).items()
    ]
    names = checked_api(usages)
    text = json.dumps({"pins": pins_now, "api": names}, sort_keys=True)
    return {
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "pins": pins_now,
        "api": names,
    }


def fingerprint_changes(old: dict, new: dict, limit: int = 20) -> str:
    """What differs between two fingerprints, in words (for a test's failure message)."""
    parts = []
    for key, what in (("pins", "pins"), ("api", "checked names")):
        before, after = set(old.get(key, ())), set(new.get(key, ()))
        for sign, items in (("+", sorted(after - before)), ("-", sorted(before - after))):
            if items:
                shown = ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
                parts.append(f"{what} {sign}{len(items)}: {shown}")
    return "; ".join(parts) or "same pins and names, another hash (the hash's recipe changed)"


# --------------------------------------------------------------------------- commands


class CommandFailed(RuntimeError):
    """A command this module started timed out or could not start; the message names the
    command and ends with the last lines of what it wrote."""


def _tail(text: str | bytes | None, lines: int = 20) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def failure_message(command: Sequence[str], what: str, output: str | bytes | None = None) -> str:
    """ "`COMMAND` WHAT; its last output: ..." (the child's own words, at most 20 lines)."""
    message = f"`{shlex.join(str(part) for part in command)}` {what}"
    tail = _tail(output)
    return f"{message}; its last output:\n{tail}" if tail else f"{message} (it wrote nothing)"


def run_command(
    command: Sequence[str], timeout: float, *, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``subprocess.run`` with a time limit and the output captured; CommandFailed (naming
    the command, with its stderr tail) when it times out or cannot start."""
    try:
        return subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired as err:
        output = err.stderr or err.stdout
        raise CommandFailed(
            failure_message(command, f"timed out after {timeout} s", output)
        ) from None
    except OSError as err:
        raise CommandFailed(failure_message(command, f"could not start: {err}")) from None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and whatever it started
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def stream_command(
    command: Sequence[str], timeout: float, *, cwd: Path | None = None, lines: int = 40
) -> tuple[int, str]:
    """Run `command` with its output (stderr merged) shown as it comes: (exit code, its
    last `lines` lines). On a timeout its process group is killed and CommandFailed names
    the command and ends with its last output."""
    try:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as err:
        raise CommandFailed(failure_message(command, f"could not start: {err}")) from None
    tail: collections.deque[str] = collections.deque(maxlen=lines)

    def pump() -> None:
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        reader.join(10)
        what = f"timed out after {timeout} s"
        raise CommandFailed(failure_message(command, what, "".join(tail))) from None
    except BaseException:  # Ctrl-C: leave no test run behind
        _kill_group(proc)
        raise
    reader.join(10)  # a grandchild may still hold the pipe: do not wait for it
    return code, "".join(tail)


def newest_releases(
    libraries: Sequence[str] = LIBRARIES,
    python: str = sys.executable,
    timeout: float = INDEX_TIMEOUT,
    errors: dict[str, str] | None = None,
) -> dict[str, str | None]:
    """The newest release of each library on the package index (``pip index versions``);
    None where the index cannot be asked, with why in `errors` and on stderr. Shows when
    pip settled for an older release."""
    newest: dict[str, str | None] = {}
    for name in libraries:
        dist = distribution(name)
        command = [python, "-m", "pip", "index", "versions", dist, "--disable-pip-version-check"]
        try:
            proc = run_command(command, timeout)
        except CommandFailed as err:
            message = str(err)
        else:
            match = re.match(rf"{re.escape(dist)} \(([^)]+)\)", proc.stdout, re.IGNORECASE)
            if match and proc.returncode == 0:
                newest[name] = match.group(1)
                continue
            what = f"exited with code {proc.returncode}" if proc.returncode else "named no version"
            message = failure_message(command, what, proc.stderr or proc.stdout)
        newest[name] = None
        print(f"newest release of {dist} unknown: {message}", file=sys.stderr)
        if errors is not None:
            errors[name] = message
    return newest


# --------------------------------------------------------------------------- unit tests


# Tests that compare the installed versions with the pins: they fail by design in an
# environment of newer releases, so `--tests` leaves them out (and the report says so).
PIN_TESTS = (
    "tests/test_doctor.py::test_the_real_pins_are_all_installed_here",
    "tests/test_doctor.py::test_this_environment_is_healthy",
    "tests/test_project.py::test_installed_versions_match_the_pins",
    "tests/test_doctor.py::test_an_installed_course_reads_its_pins_from_its_metadata",
)
# The helpers' unit tests: no slow tests (the notebooks), no browser tests.
UNIT_TESTS = ("-m", "not slow", "--ignore=tests/browser", "tests")


def _pytest(
    python: str, args: list[str], xml: Path, timeout: float = TESTS_TIMEOUT
) -> tuple[int, dict]:
    """(pytest's exit code, counts from its junit XML). CommandFailed on a timeout; without
    a report, the counts are {"error": the command and its last output}."""
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    command += args
    code, tail = stream_command(command, timeout, cwd=ROOT)  # its output shows its progress
    if not xml.exists():
        what = f"exited with code {code} and wrote no test report"
        return code, {"error": failure_message(command, what, tail)}
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
    return code, counts


def run_unit_tests(
    python: str = sys.executable, baseline: str | None = None, timeout: float = TESTS_TIMEOUT
) -> dict:
    """The helpers' unit tests (no notebooks, no slow or browser tests): counts and failures.

    `baseline`: the Python of the pinned environment; the tests that fail here are run there
    too, to tell drift from a failure the pins share. A run past `timeout` seconds is
    stopped and reported (``error``), not raised.
    """
    with tempfile.TemporaryDirectory() as tmp:
        args = [*UNIT_TESTS, *(f"--deselect={test}" for test in PIN_TESTS)]
        try:
            code, counts = _pytest(python, args, Path(tmp) / "latest.xml", timeout)
        except CommandFailed as err:
            return {"exit_code": None, "error": str(err), "deselected": list(PIN_TESTS)}
        summary: dict = {"exit_code": code, **counts, "deselected": list(PIN_TESTS)}
        if baseline and counts.get("failed"):
            try:
                _, pinned_run = _pytest(
                    baseline, counts["failed"], Path(tmp) / "pinned.xml", timeout
                )
            except CommandFailed as err:
                pinned_run = {}
                summary["baseline_error"] = str(err)
            summary["also_fail_with_pins"] = pinned_run.get("failed", [])
        return summary


_COLLECTED = re.compile(r"(\d+)(?:/(\d+))? tests? collected(?: \((\d+) deselected\))?")


def count_tests(python: str = sys.executable, timeout: float = COLLECT_TIMEOUT) -> dict:
    """How many unit tests ``--tests`` would run, counted by ``pytest --collect-only`` and
    not run: {"run": False, "collected": N, "collected_all": N with the slow ones, ...}."""
    command = [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += UNIT_TESTS
    shown = "pytest --collect-only -q " + shlex.join(UNIT_TESTS)
    try:
        proc = run_command(command, timeout, cwd=ROOT)
    except CommandFailed as err:
        return {"run": False, "command": shown, "error": str(err)}
    match = _COLLECTED.search(proc.stdout)
    if proc.returncode != 0 or not match:
        what = f"exited with code {proc.returncode}" if proc.returncode else "counted nothing"
        error = failure_message(command, what, proc.stderr + proc.stdout)
        return {"run": False, "command": shown, "error": error}
    selected = int(match.group(1))
    return {
        "run": False,
        "command": shown,
        "collected": selected,
        "collected_all": int(match.group(2) or selected),
    }


def unit_test_line(result: dict) -> str:
    if result.get("run") is False:
        if "collected" not in result:
            return f"unit tests: not run in this mode, and not counted: {result['error']}"
        return (
            f"unit tests: not run in this mode; `{result['command']}` counts "
            f"{result['collected']} (the selection `--tests` runs; "
            f"{result['collected_all']} with the slow ones, browser tests not counted)"
        )
    if result.get("error"):
        return f"unit tests: did not finish: {result['error']}"
    if "tests" not in result:
        return f"unit tests: did not run (pytest exit code {result['exit_code']})"
    passed = result["tests"] - result["failures"] - result["skipped"]
    line = f"unit tests: {passed} passed, {result['failures']} failed, {result['skipped']} skipped"
    shared = set(result.get("also_fail_with_pins", ()))
    if result["failed"]:
        named = [f"{t} (fails with the pins too)" if t in shared else t for t in result["failed"]]
        line += ": " + ", ".join(named)
    return line


# --------------------------------------------------------------------------- report


def counts(usages: Sequence[Usage], library: str) -> tuple[int, int]:
    """(names, keywords and options) of `library` that the check covers."""
    mine = [u for u in usages if u.library == library]
    return len({u.target for u in mine}), len({(u.target, k) for u in mine for k in u.keywords})


def verdicts(
    usages: Sequence[Usage], problems: Sequence[Problem], seen: dict[str, str | None]
) -> list[str]:
    """One line per library: "trl 1.16.0: OK (12 names, 40 keywords checked)", its problems,
    or NOT CHECKED when the course uses no name of it (never a pass)."""
    lines = []
    for library, version in seen.items():
        names, keywords = counts(usages, library)
        bad = [p for p in problems if p.library == library]
        label = f"{library} {version or '(not installed)'}"
        if bad:
            plural = "s" if len(bad) > 1 else ""
            lines.append(
                f"{label}: {len(bad)} problem{plural}: " + "; ".join(p.line() for p in bad)
            )
        elif names == 0:
            lines.append(
                f"{label}: NOT CHECKED: helpers/ and the notebooks use no name of it "
                "(0 names, 0 keywords)"
            )
        else:
            lines.append(f"{label}: OK ({names} names, {keywords} keywords checked)")
    return lines


def machine() -> str:
    """The machine in words: "Linux x86_64, 2 CPU cores, CPU only"."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    torch = sys.modules.get("torch")
    if torch is None:
        accelerator = "accelerator not looked for"
    elif torch.cuda.is_available():
        accelerator = f"GPU {torch.cuda.get_device_name(0)}"
    else:
        accelerator = "CPU only (torch sees no GPU)"
    return f"{platform.system()} {platform.machine()}, {cores} CPU cores, {accelerator}"


def latest_libraries(makefile: Path = ROOT / "Makefile") -> set[str]:
    """The distributions ``make test-latest`` upgrades (the Makefile's LATEST_LIBRARIES)."""
    try:
        text = makefile.read_text(encoding="utf-8")
    except OSError:
        return set()
    match = re.search(r"^LATEST_LIBRARIES\s*:?=(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def _how_used(usages: Sequence[Usage]) -> list[str]:
    """Notes on the usages that are not Python calls: command lines and config files."""
    notes = []
    commands: dict[str, set[str]] = {}
    for usage in usages:
        if usage.cli:
            commands.setdefault(usage.target, set()).update(usage.keywords)
    for module, options in sorted(commands.items()):
        listed = ", ".join(f"`{o}`" for o in sorted(options)) or "no option"
        parser = CLI_PARSERS.get(module, "no parser known")
        notes.append(
            f"`python -m {module}` is started by the course; its options ({listed}) are "
            f"checked against `{parser}()`."
        )
    for (file, function), schema in sorted(CONFIG_SCHEMAS.items()):
        keys = {k for u in usages if u.target == schema and not u.cli for k in u.keywords}
        if keys:
            notes.append(
                f"The config file `{function}()` in {file} writes is checked key by key "
                f"({len(keys)} keys) against `{schema}`'s fields."
            )
    return notes


def write_report(
    out: Path,
    seen: dict[str, str | None],
    lines: list[str],
    problems: Sequence[Problem],
    usages: Sequence[Usage],
    tests: dict | None,
    when: datetime.datetime,
    newest: dict[str, str | None] | None = None,
    *,
    command: str = "make test-latest",
    mode: str | None = None,
    newest_errors: dict[str, str] | None = None,
    not_checked: dict[str, list[str]] | None = None,
) -> tuple[Path, Path]:
    """drift/report.json and drift/report.md: what was checked, against which versions, by
    which command on which machine, and the fingerprint of the pins and names checked."""
    out.mkdir(parents=True, exist_ok=True)
    pins_now = pinned(tuple(seen))
    stamp = fingerprint(usages, tuple(seen))
    if mode is None:
        differ = [
            lib
            for lib, v in seen.items()
            if v is None or pins_now[lib] not in (None, v.split("+")[0])
        ]
        mode = (
            "the pinned versions (each installed version is its pin in requirements.txt)"
            if not differ
            else "installed versions that differ from the pins for " + ", ".join(differ)
        )
        if newest is None:
            mode += (
                "; static API check only: the newest releases were neither installed nor asked"
                " for (`make test-latest` does both)"
            )
    data = {
        "date": when.isoformat(timespec="seconds"),
        "command": command,
        "mode": mode,
        "machine": machine(),
        "python": platform.python_version(),
        "distributions": {library: distribution(library) for library in seen},
        "pins": pins_now,
        "versions": seen,
        "newest_on_index": newest,
        "newest_errors": newest_errors or None,
        "verdicts": lines,
        "problems": [dataclasses.asdict(p) for p in problems],
        "checked": {
            "names": len({u.target for u in usages}),
            "keywords": len({(u.target, k) for u in usages for k in u.keywords}),
            "per_library": {
                library: dict(zip(("names", "keywords"), counts(usages, library), strict=True))
                for library in seen
            },
        },
        "not_checked_imports": not_checked,
        "unit_tests": tests,
        "fingerprint": stamp,
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    md = [
        "# Drift report",
        "",
        f"Made on {when:%Y-%m-%d %H:%M} UTC by `{command}` with Python {data['python']}"
        f" on {data['machine']}.",
        f"Versions checked: {mode}.",
        f"Regenerate it with {REGENERATE}; do not edit it by hand.",
        "",
        f"Fingerprint: `sha256:{stamp['sha256']}`, over the pins of the {len(seen)} libraries"
        f" below and the {len(stamp['api'])} names, keywords and options checked (both listed"
        " in report.json). `tests/test_drift.py` recomputes it from the checkout and fails"
        " when the pins or the names the course uses have changed since this report.",
        "",
        "| library | pinned | version checked | newest on the index | verdict |",
        "|---|---|---|---|---|",
    ]
    for (library, version), line in zip(seen.items(), lines, strict=True):
        latest = (newest or {}).get(library) or (
            "unknown" if library in (newest_errors or {}) else "not asked"
        )
        name = (
            library if distribution(library) == library else f"{library} ({distribution(library)})"
        )
        pin = pins_now.get(library) or "not pinned"
        md.append(f"| {name} | {pin} | {version or '-'} | {latest} | {line.split(': ', 1)[1]} |")
    md.append("")
    held = [
        f"{library} {version} (newest: {(newest or {}).get(library)})"
        for library, version in seen.items()
        if version and (newest or {}).get(library) not in (None, version.split("+")[0])
    ]
    if held:
        why = []
        names = [h.split(" ", 1)[0] for h in held]
        upgraded = latest_libraries()
        if "torch" in names:
            why.append(
                "`make test-latest` keeps torch at its pin unless `LATEST_TORCH` says otherwise"
                " (PyPI's newer Linux torch wheels are CUDA builds of several GB)"
            )
        kept = [n for n in names if n != "torch" and distribution(n) not in upgraded]
        if kept:
            why.append(
                f"`make test-latest` upgrades only the Makefile's LATEST_LIBRARIES, so "
                f"{', '.join(kept)} stayed at the pins"
            )
        if any(n != "torch" and distribution(n) in upgraded for n in names):
            why.append("pip settled for an older release to satisfy another package's bound")
        md += [f"Older than the index's newest: {', '.join(held)}. {'; '.join(why)}.", ""]
    if newest_errors:
        md += ["The index gave no newest release for: " + ", ".join(sorted(newest_errors))]
        md += ["(why: report.json's `newest_errors`).", ""]
    notes = _how_used(usages)
    if notes:
        md += ["Besides Python calls:", ""] + [f"- {note}" for note in notes] + [""]
    if not_checked:
        md += [
            "Imported by the course but not checked (not pinned in requirements.txt: they come"
            " with the libraries above, or live in chapter 11's own environment): "
            + ", ".join(
                f"{name} ({len(files)} file{'s' if len(files) > 1 else ''})"
                for name, files in not_checked.items()
            )
            + ".",
            "",
        ]
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
        "--count-tests",
        action="store_true",
        help="count the helpers' unit tests (pytest --collect-only) without running them",
    )
    parser.add_argument(
        "--baseline", help="Python of the pinned environment: rerun failing tests there"
    )
    parser.add_argument("--report", type=Path, help="write report.md and report.json here")
    parser.add_argument(
        "--newest", action="store_true", help="ask the package index for the newest releases"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "tools.drift", *(sys.argv[1:] if argv is None else argv)])
    usages = find_usages()
    problems = check(usages)
    seen = versions()
    lines = verdicts(usages, problems, seen)
    if args.tests:
        tests = run_unit_tests(baseline=args.baseline)
    elif args.count_tests:
        tests = count_tests()
    else:
        tests = None
    newest_errors: dict[str, str] = {}
    newest = newest_releases(errors=newest_errors) if args.newest else None
    for line in lines:
        print(line)
    if tests is not None:
        print(unit_test_line(tests))
    if args.report:
        when = datetime.datetime.now(datetime.timezone.utc)
        imported = third_party_imports()
        not_checked = {name: files for name, files in imported.items() if name not in LIBRARIES}
        written = write_report(
            args.report,
            seen,
            lines,
            problems,
            usages,
            tests,
            when,
            newest,
            command=command,
            newest_errors=newest_errors,
            not_checked=not_checked,
        )
        for path in written:
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    unchecked = [line for line in lines if ": NOT CHECKED" in line]
    new_failures = set((tests or {}).get("failed", ())) - set(
        (tests or {}).get("also_fail_with_pins", ())
    )
    broken = tests is not None and (
        bool(tests.get("error"))
        or (tests.get("run") is not False and ("tests" not in tests or bool(new_failures)))
    )
    failed = bool(problems) or broken or bool(unchecked)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
