"""Run a notebook's code cells in a fresh kernel, one by one, with a time limit per cell.

The outputs are captured the way nbval captures them (the raw ``stream``,
``display_data``, ``execute_result`` and ``error`` messages of each cell, nothing
applied afterwards), so that they can be compared with a notebook's stored outputs
by the rules in ``compare.py``. The kernel is the Python of the running
environment, as with ``pytest --nbval-current-env``; its working directory is the
notebook's folder.

A cell that runs past its limit is interrupted, the kernel is shut down, and
every later cell is reported as not run: after a time-out nothing later is
trustworthy. This is a fresh process with a time limit, *not* a sandbox: the
code runs with the permissions of whoever runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

from nbformat import NotebookNode

from .compare import cell_options

OUTPUT_TIMEOUT = 10.0
"""Seconds to wait for a finished cell's last outputs (nbval waits 5)."""


@dataclass
class CellRun:
    """What happened to one code cell: status is ok, error, timeout, dead, not run or skipped."""

    index: int
    status: str
    outputs: list = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0


def _start_kernel(cwd: Path, startup_timeout: float):
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel

    return RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(cwd), startup_timeout=startup_timeout)


def _await_reply(kernel, msg_id: str, timeout: float) -> str:
    """Wait for the cell's execute_reply: "done", "timeout" or "dead" (polled every second)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        try:
            msg = kernel.get_message("shell", timeout=min(1.0, left))
        except Empty:
            if not kernel.is_alive():
                return "dead"
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return "done"


def _collect_outputs(kernel, msg_id: str, wait: float) -> tuple[list, bool]:
    """The cell's outputs from the iopub channel, up to its idle status; (outputs, complete)."""
    outputs = []
    while True:
        try:
            msg = kernel.get_message("iopub", timeout=wait)
        except Empty:
            return outputs, False
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs, True
        if kind in ("display_data", "execute_result"):
            out = NotebookNode(output_type=kind, metadata=content["metadata"], data=content["data"])
            if kind == "execute_result":
                out.execution_count = content["execution_count"]
            outputs.append(out)
        elif kind == "stream":
            outputs.append(
                NotebookNode(output_type="stream", name=content["name"], text=content["text"])
            )
        elif kind == "error":
            outputs.append(
                NotebookNode(
                    output_type="error",
                    ename=content["ename"],
                    evalue=content["evalue"],
                    traceback=content["traceback"],
                )
            )
        # clear_output and update_display_data are not applied, as in nbval


def run_cells(
    nb, cwd: str | Path, timeout: float, startup_timeout: float = 60.0
) -> dict[int, CellRun]:
    """Execute every code cell of `nb` in order; {cell index: CellRun}."""
    runs: dict[int, CellRun] = {}
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    kernel = _start_kernel(Path(cwd), startup_timeout)
    stopped = ""
    try:
        for i in code:
            cell = nb.cells[i]
            if stopped:
                runs[i] = CellRun(i, "not run", detail=stopped)
                continue
            if cell_options(cell)["skip"]:
                runs[i] = CellRun(i, "skipped", detail="tagged nbval-skip")
                continue
            start = time.monotonic()
            msg_id = kernel.execute_cell_input(cell.source, allow_stdin=False)
            state = _await_reply(kernel, msg_id, timeout)
            if state == "timeout":
                kernel.interrupt()
                outputs, _ = _collect_outputs(kernel, msg_id, wait=2.0)
                runs[i] = CellRun(
                    i, "timeout", outputs, f"still running after {timeout:g} s", timeout
                )
                stopped = "an earlier cell timed out"
                continue
            if state == "dead":
                runs[i] = CellRun(i, "dead", detail="the kernel died while running this cell")
                stopped = "the kernel died in an earlier cell"
                continue
            outputs, complete = _collect_outputs(kernel, msg_id, OUTPUT_TIMEOUT)
            seconds = time.monotonic() - start
            errors = [out for out in outputs if out.output_type == "error"]
            if not complete:
                runs[i] = CellRun(i, "error", outputs, "its outputs never finished", seconds)
            elif errors and not cell_options(cell)["check_exception"]:
                detail = f"raised {errors[0].ename}: {errors[0].evalue}"
                runs[i] = CellRun(i, "error", outputs, detail, seconds)
            else:
                runs[i] = CellRun(i, "ok", outputs, "", seconds)
            if not kernel.is_alive():
                stopped = "the kernel died in an earlier cell"
    finally:
        if hasattr(kernel, "km"):  # RunningKernel.stop() deletes it
            kernel.stop()
    return runs
