"""Chapter 05's memory calculator in a real JupyterLab, in a real (headless) browser.

What a learner does after `make lab`: open the chapter, run its set-up cell and the
calculator cell, read the verdict, tick "gradient checkpointing" and move the batch
size slider, and see the verdict and the chart change. The expected verdicts come from
``helpers.memory.estimate_training_memory`` for the settings of the chapter's own
calculator cell, so the test follows the chapter and the estimator.

The notebook is a copy, trimmed to the chapter's set-up cell and calculator cell
(outputs cleared): running the whole chapter would train a model for minutes, and a
short notebook keeps both cells in view without scrolling through JupyterLab's
windowed rendering of a long one. The cells are the chapter's, found by their code.

Screenshots (before and after the changes, and at a failure) are saved in
test-artifacts/browser/test_memory_calculator_in_jupyterlab/.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
import time
from pathlib import Path

import nbformat

from helpers import repo
from helpers.memory import MemoryCalculator, estimate_training_memory
from helpers.memory.widgets import BATCH_SIZES

ROOT = repo.repo_root()
CHAPTER = ROOT / "notebooks" / "05_sfttrainer_and_memory.ipynb"
SETUP_CODE = "from helpers import exercises, hardware, memory"
CALCULATOR_CODE = "memory.MemoryCalculator("
TEST_BUDGET_S = 150  # the whole test from JupyterLab's start (Chromium starts in ~1 s)
KERNEL_READY_S = 60
WIDGET_RENDERED_S = 120  # importing torch and matplotlib in a fresh kernel, on a busy CPU
CHANGE_SHOWN_S = 30
NAME = "calculator.ipynb"
ACTIVE = re.compile(r"\bjp-mod-active\b")  # JupyterLab's class for the selected cell
KERNEL_IDLE = re.compile(r"^Python 3 \(ipykernel\) \| Idle$")  # the status bar's kernel item
TRACEBACK = "Traceback (most recent call last)"  # how IPython shows an exception
RUN_PROMPT = re.compile(r"^\[(\*|\d+)\]:$")  # a cell queued, running or run


def chapter_cells() -> tuple[nbformat.NotebookNode, list[nbformat.NotebookNode]]:
    """The chapter and its set-up and calculator cells (a clear failure if they moved)."""
    chapter = nbformat.read(CHAPTER, as_version=4)
    cells = []
    for code in (SETUP_CODE, CALCULATOR_CODE):
        found = [c for c in chapter.cells if c.cell_type == "code" and code in c.source]
        assert found, f"{CHAPTER.name} has no code cell with {code!r}: update this test"
        cells.append(found[0])
    return chapter, cells


def calculator_settings(source: str) -> dict:
    """The calculator's settings in the chapter's cell: its defaults, updated by the call."""
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "MemoryCalculator"
    ]
    assert len(calls) == 1, f"expected one MemoryCalculator(...) call in:\n{source}"
    parameters = inspect.signature(MemoryCalculator).parameters
    settings = {
        name: p.default
        for name, p in parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    settings.update({kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords})
    if calls[0].args:
        settings["model_or_config"] = ast.literal_eval(calls[0].args[0])
    return settings


def expected_verdict(settings: dict) -> str:
    """The verdict line for these settings, from the estimator (not from the widget)."""
    estimate = estimate_training_memory(
        settings["model_or_config"],
        batch_size=settings["batch_size"],
        seq_len=settings["seq_len"],
        dtype=settings["dtype"],
        quantization=settings["quantization"],
        lora_rank=settings["lora_rank"],
        gradient_checkpointing=settings["gradient_checkpointing"],
        mixed_precision=settings["mixed_precision"],
        attn_implementation=settings["attn_implementation"],
        optimizer=settings["optimizer"],
    )
    budget = settings["budget_gb"]
    # the verdict compares the budget with the predicted process memory (RSS on a CPU)
    process = estimate.process_memory(settings.get("device", "cpu"))
    answer = "yes" if process.predicted <= budget * 1e9 else "no"
    return (
        f"fits in {budget:g} GB: {answer} ({process.short()}; "
        f"live tensors {estimate.total / 1e9:.2f} GB)"
    )


def test_calculator_settings_are_read_from_the_chapter():
    """Runs everywhere (no browser): the part of the test that reads the chapter."""
    _, (setup, calculator) = chapter_cells()
    assert "import helpers" in setup.source
    settings = calculator_settings(calculator.source)
    assert settings["model_or_config"] == "smollm2-135m-instruct"  # the default
    assert {"budget_gb", "batch_size", "seq_len", "lora_rank"} <= set(settings)
    assert expected_verdict(settings).startswith(f"fits in {settings['budget_gb']:g} GB: ")
    ticked = expected_verdict({**settings, "gradient_checkpointing": True})
    assert ticked != expected_verdict(settings), "ticking checkpointing must change the verdict"


class Deadline:
    """One time budget for the whole test; each wait gets what is left of it (in ms)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def ms(self, cap_s: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the test ran past its time budget")
        return 1000 * min(cap_s, left)


def test_memory_calculator_in_jupyterlab(tmp_path, lab_factory, browser, screenshot):
    from playwright.sync_api import expect

    deadline = Deadline(TEST_BUDGET_S)
    chapter, (setup, calculator) = chapter_cells()
    settings = calculator_settings(calculator.source)
    checkpointing = {**settings, "gradient_checkpointing": True}
    # one step left on the batch-size slider: the option before the chapter's
    assert BATCH_SIZES.index(settings["batch_size"]) > 0, "no smaller batch size to move to"
    smaller = BATCH_SIZES[BATCH_SIZES.index(settings["batch_size"]) - 1]
    smaller_batch = {**checkpointing, "batch_size": smaller}
    verdicts = [expected_verdict(s) for s in (settings, checkpointing, smaller_batch)]
    assert len(set(verdicts)) == 3, f"each change must show in the verdict: {verdicts}"

    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    copy = nbformat.v4.new_notebook(metadata=chapter.metadata)
    for cell in (setup, calculator):
        copy.cells.append(nbformat.v4.new_code_cell(cell.source, id=cell.id))
    nbformat.write(copy, notebook_dir / NAME)

    lab = lab_factory(notebook_dir, timeout_s=deadline.ms(60) / 1000)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)  # for the calls below that take no timeout of their own
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    shots: list[Path] = []

    @contextlib.contextmanager
    def step(what: str):
        start = time.monotonic()
        try:
            yield
            print(f"{time.monotonic() - start:5.1f} s  {what}")  # pytest shows it on a failure
        except Exception as err:
            with contextlib.suppress(Exception):
                shots.append(screenshot(page, "failure.png"))
            errors = "\n".join(console_errors[-10:]) or "(none)"
            outputs = "(none)"
            with contextlib.suppress(Exception):  # what the cells printed (a traceback?)
                texts = page.locator(".jp-OutputArea-output").all_inner_texts()
                outputs = "\n".join(t[-2000:] for t in texts) or "(none)"
            message = str(err).split("\nAria snapshot:")[0].strip()  # not playwright's page dump
            raise AssertionError(
                f"{what}: {type(err).__name__}: {message}\n"
                f"--- cell outputs in the page ---\n{outputs}\n"
                f"--- browser console errors (last 10) ---\n{errors}\n"
                f"--- JupyterLab log (tail) ---\n{lab.log_tail()}"
            ) from err

    with step("open the notebook in JupyterLab"):
        page.goto(lab.notebook_url(NAME), timeout=deadline.ms(60), wait_until="load")
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        expect(cells).to_have_count(2, timeout=deadline.ms(60))

    with step("wait until the status bar says the kernel is idle"):
        # JupyterLab drops a cell run while the kernel is still "Initializing" or
        # "Connecting"; the status bar shows the kernel's state as the notebook sees it.
        status = page.locator("#jp-main-statusbar").get_by_text(KERNEL_IDLE)
        expect(status).to_have_count(1, timeout=deadline.ms(KERNEL_READY_S))

    with step("run the set-up cell and the calculator cell with Shift+Enter"):
        cells.nth(0).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        prompt = cells.nth(0).locator(".jp-InputPrompt")
        expect(prompt).to_have_text(RUN_PROMPT, timeout=deadline.ms(10))
        expect(cells.nth(1)).to_have_class(ACTIVE, timeout=deadline.ms(10))
        page.keyboard.press("Shift+Enter")
        verdict = page.locator(".memory-calculator .memory-calculator-verdict")
        traceback = page.locator(".jp-OutputArea-output", has_text=TRACEBACK)
        expect(verdict.or_(traceback).first).to_be_visible(timeout=deadline.ms(WIDGET_RENDERED_S))
        assert traceback.count() == 0, "a cell raised an exception (see its output below)"

    with step("read the first verdict"):
        expect(verdict).to_have_text(verdicts[0], timeout=deadline.ms(CHANGE_SHOWN_S))
        chart = page.locator(".memory-calculator img.memory-calculator-chart")
        expect(chart).to_be_visible(timeout=deadline.ms(10))
        first_chart = chart.get_attribute("src")
        page.locator(".memory-calculator").scroll_into_view_if_needed()
        shots.append(screenshot(page, "before.png"))

    with step("tick 'gradient checkpointing'"):
        box = page.locator(".memory-calculator-gradient-checkpointing input[type='checkbox']")
        box.check(timeout=deadline.ms(10))
        expect(verdict).to_have_text(verdicts[1], timeout=deadline.ms(CHANGE_SHOWN_S))
        expect(chart).not_to_have_attribute("src", first_chart, timeout=deadline.ms(10))

    with step("move the batch size slider one step left with the keyboard"):
        handle = page.locator(".memory-calculator-batch-size .noUi-handle")
        handle.focus(timeout=deadline.ms(10))
        page.keyboard.press("ArrowLeft")
        expect(verdict).to_have_text(verdicts[2], timeout=deadline.ms(CHANGE_SHOWN_S))
        readout = page.locator(".memory-calculator-batch-size .widget-readout")
        expect(readout).to_have_text(str(smaller), timeout=deadline.ms(10))
        shots.append(screenshot(page, "after.png"))

    assert all(path.stat().st_size > 10_000 for path in shots), "a screenshot is (nearly) empty"
