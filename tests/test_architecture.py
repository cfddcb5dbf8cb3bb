"""The architecture is checked, not only described: ARCHITECTURE.md's layers are
import-linter contracts (pyproject.toml), and these tests show that the contracts bite,
that no private name crosses a module boundary, and that children import this course."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import hardware, repo

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The two packages and the contracts, copied so that a test can break them."""
    root = tmp_path_factory.mktemp("architecture")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in ("helpers", "tools"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("*.json*"))
    return root


def test_the_contracts_hold_and_an_upward_import_breaks_them(copy):
    kept = _lint(copy)
    assert kept.returncode == 0, kept.stdout[-3000:]
    assert "0 broken" in kept.stdout
    models = copy / "helpers" / "models.py"
    original = models.read_text()
    try:
        models.write_text(original + "\nfrom . import training  # an upward import\n")
        broken = _lint(copy)
    finally:
        models.write_text(original)
    assert broken.returncode != 0
    assert "helpers.models is not allowed to import helpers.training" in broken.stdout


def test_helpers_importing_the_tooling_breaks_a_contract(copy):
    doctor = copy / "helpers" / "doctor.py"
    original = doctor.read_text()
    try:
        doctor.write_text(original + "\nimport tools.colab\n")
        broken = _lint(copy)
    finally:
        doctor.write_text(original)
    assert broken.returncode != 0
    assert "helpers never imports the repository's tooling" in broken.stdout


def _private_imports(path: Path) -> list[str]:
    """``from x import _name``, ``import x._module`` and ``module._name`` on an imported
    module, in one file of the course's packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours = ("helpers", "tools")
    imported_modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] not in ours:
                continue
            if any(part.startswith("_") and part != "__future__" for part in module.split(".")):
                found.append(f"{path.name}:{node.lineno} from {module}")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path.name}:{node.lineno} {alias.name}")
                imported_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ours:
                    if any(p.startswith("_") for p in alias.name.split(".")):
                        found.append(f"{path.name}:{node.lineno} import {alias.name}")
                    imported_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module_boundary():
    found = []
    for package in ("helpers", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found += _private_imports(path)
    assert found == [], "make it public (and document it) or keep it in its module"


def test_the_private_name_check_sees_each_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from helpers.models import _spec\nfrom helpers import drift_x\n"
        "import helpers._secret\nfrom . import models\nmodels._spec('x')\n"
    )
    assert len(_private_imports(sample)) == 3


# --- children of the course import this same course ---------------------------------------------


def test_a_child_gets_this_package_first_on_its_path_and_never_the_text_none():
    env = repo.child_env({"PATH": "/bin"})
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths == [str(repo.PACKAGE_PARENT)] and "None" not in env["PYTHONPATH"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TOKENIZERS_PARALLELISM"] == "false"
    kept = repo.child_env({"PYTHONPATH": f"/elsewhere{os.pathsep}{repo.PACKAGE_PARENT}"}, X="1")
    assert kept["PYTHONPATH"].split(os.pathsep) == [str(repo.PACKAGE_PARENT), "/elsewhere"]
    assert kept["X"] == "1"
    other = repo.child_env({"PYTHONPATH": "/elsewhere"}, imports_helpers=False)
    assert other["PYTHONPATH"] == "/elsewhere"


def test_an_installed_course_puts_its_site_packages_on_the_childs_path(tmp_path, monkeypatch):
    """The bug this replaces: an installed course (no checkout) put the text ``None`` on the
    server's PYTHONPATH. Now the folder holding the package goes there, checkout or not."""
    from helpers.serving import launcher

    site = tmp_path / "site-packages"
    monkeypatch.setattr(repo, "PACKAGE_PARENT", site)
    assert repo.repo_root(site / "helpers") is None  # no checkout around it
    captured = {}

    class Stop(Exception):
        pass

    def popen(command, **kwargs):
        captured.update(kwargs["env"])
        raise Stop

    monkeypatch.setattr(launcher.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        launcher.Server(tmp_path, log_dir=tmp_path).start()
    assert captured["PYTHONPATH"].split(os.pathsep)[0] == str(site)
    assert "None" not in captured["PYTHONPATH"].split(os.pathsep)


def test_the_repository_address_is_written_once_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'Repository = "{repo.REPOSITORY}"' in text
    assert repo.REPOSITORY.startswith("https://")


# --- where quantized layers run ---------------------------------------------------------------


@pytest.mark.parametrize(
    "supported, best, quantization, expected",
    [
        (("cuda", "cpu"), "cuda", "4bit", "cuda"),  # a CUDA GPU: bitsandbytes' CUDA path
        (("cpu",), "cpu", "4bit", "cpu"),
        (("cpu",), "mps", "4bit", "cpu"),  # Apple silicon: bitsandbytes runs on the CPU
        (("cpu",), "mps", None, "mps"),  # unquantized models stay on the GPU
        ((), "mps", "8bit", "mps"),  # no bitsandbytes: loading will say how to install it
    ],
)
def test_one_rule_places_quantized_models(monkeypatch, supported, best, quantization, expected):
    monkeypatch.setattr(hardware, "bitsandbytes_devices", lambda: supported)
    assert hardware.placement(quantization, best) == expected


def test_every_link_to_the_repository_uses_the_one_address():
    """Colab badges, install cells and README links agree with pyproject's [project.urls]."""
    import re

    ours = repo.REPOSITORY.removeprefix("https://github.com/")
    ways = re.compile(
        r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/"  # a badge
        r"|git\+https://github\.com/([\w.-]+/[\w.-]+?)@"  # an install cell
        r"|https://github\.com/([\w.-]+/[\w.-]+)/(?:blob|tree)/"  # a link to a file
    )
    files = [ROOT / "README.md", *sorted((ROOT / "colab").glob("*"))]
    files += sorted(ROOT.glob("notebooks/*.ipynb"))
    seen, wrong = 0, []
    for path in files:
        for match in ways.finditer(path.read_text(encoding="utf-8")):
            found = next(group for group in match.groups() if group)
            if found in ("huggingface/trl", "huggingface/transformers", "huggingface/peft"):
                continue  # the libraries' own sources, cited
            seen += 1
            if found != ours:
                wrong.append(f"{path.name}: {match.group(0)}")
    assert wrong == [] and seen >= 2 * 12  # every chapter's badge and install cell at least


# --- imports inside functions -----------------------------------------------------------------

HEAVY = {
    "torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate", "numpy",
    "matplotlib", "onnx", "onnxruntime", "fastapi", "uvicorn", "pydantic", "sklearn",
    "sacrebleu", "rouge_score", "gguf", "safetensors", "ipywidgets", "nbformat", "nbclient",
    "jupyter_client", "tensorboard", "scipy",
}  # fmt: skip
"""Libraries that take a noticeable time to import (torch alone takes seconds)."""


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(package: str) -> dict[str, tuple[set[str], list[tuple[int, str]]]]:
    """{module: (what it imports at its top level, [(line, module) imported in a function])}."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        top, inside = set(), []

        def visit(node, in_function, name=name, is_package=is_package, top=top, inside=inside):
            for child in ast.iter_child_nodes(node):
                nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                targets = []
                if isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        here = name.split(".") if is_package else name.split(".")[:-1]
                        here = here[: len(here) - child.level + 1]
                        base = ".".join(here + ([child.module] if child.module else []))
                    targets = [f"{base}.{a.name}" for a in child.names]
                    targets = [t if _is_module(t) else base for t in targets]
                elif isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                for target in targets:
                    (inside.append((child.lineno, target)) if nested else top.add(target))
                visit(child, nested)

        visit(ast.parse(path.read_text(encoding="utf-8")), False)
        found[name] = (top, inside)
    return found


def test_an_import_inside_a_function_is_only_for_keeping_a_light_module_light():
    """Inside a function, a course module may import only what is heavy (torch and the like,
    directly or through the module it imports), and only when it is light itself: anywhere
    else the import belongs at the top, where import-linter and a reader see it first."""
    modules = _imports("helpers")
    heavy: dict[str, bool] = {}

    def is_heavy(module: str, seen: tuple = ()) -> bool:
        if module not in heavy:
            top = modules.get(module, (set(), []))[0]
            heavy[module] = any(
                t.split(".")[0] in HEAVY
                or (t in modules and t not in seen and is_heavy(t, (*seen, module)))
                for t in top
            )
        return heavy[module]

    wrong = []
    for module, (_, inside) in modules.items():
        for line, target in inside:
            if target.split(".")[0] != "helpers" or target not in modules:
                continue
            if is_heavy(module) or not is_heavy(target):
                wrong.append(f"{module}:{line} imports {target} inside a function")
    assert wrong == []
