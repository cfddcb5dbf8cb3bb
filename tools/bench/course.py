"""Goal 5: how long the whole course takes, every chapter executed top to bottom.

``python -m tools.bench course`` runs each ``notebooks/NN_*.ipynb`` in a fresh kernel,
the way a learner's "Run All" does, and records its seconds in ``bench/course.json``. The
notebooks run from a temporary copy of the folder: the stored notebooks and the files the
chapters write (``notebooks/outputs/``) are left as they are.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from helpers import repo
from tools import notebooks

GOAL_SECONDS = 30 * 60


def chapter_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def execute_copy(path: Path, workdir: Path, timeout: int) -> tuple[float, str | None]:
    """Execute the notebook at `path` inside `workdir` without saving it; (seconds, error)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=notebooks.KERNEL,
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
    return time.perf_counter() - start, error


def time_course(
    folder: str | Path | None = None,
    *,
    timeout: int = 1800,
    only: list[str] | None = None,
) -> dict:
    """Execute every chapter (or those whose name starts with one of `only`); time each."""
    if folder is None:
        folder = repo.require_checkout("python -m tools.bench course") / "notebooks"
    folder = Path(folder)
    paths = chapter_paths(folder)
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    if not paths:
        raise FileNotFoundError(f"no chapter notebooks (NN_*.ipynb) in {folder}")
    chapters = []
    with tempfile.TemporaryDirectory(prefix="course-bench-") as tmp:
        workdir = Path(tmp)
        for path in paths:
            shutil.copy(path, workdir / path.name)
            print(f"executing {path.name} ...", flush=True)
            seconds, error = execute_copy(workdir / path.name, workdir, timeout)
            print(f"  {path.name}: {seconds:.0f} s{'' if error is None else ' FAILED ' + error}")
            chapters.append({"notebook": path.name, "seconds": seconds, "error": error})
    total = sum(c["seconds"] for c in chapters)
    return {
        "chapters": chapters,
        "total_seconds": total,
        "goal_seconds": GOAL_SECONDS,
        "complete": only is None and all(c["error"] is None for c in chapters),
        "met": only is None and all(c["error"] is None for c in chapters) and total <= GOAL_SECONDS,
    }


def write(result: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "course.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
