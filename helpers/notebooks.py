"""Execute chapter notebooks the way the tests check them, and check their hygiene.

``python -m helpers.notebooks execute notebooks/00_tldr.ipynb`` re-runs a notebook
top to bottom in a fresh ``python3`` kernel (working directory: the notebook's
folder) and stores its outputs; ``python -m helpers.notebooks check`` lists what
would make a stored notebook untrustworthy under nbval.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

KERNEL = "python3"


def execute(path: str | Path, timeout: int = 900) -> float:
    """Run every cell of the notebook in order and save it in place; return seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("widgets", None)  # saved widget state never matches a fresh run
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    client.execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def problems(path: str | Path) -> list[str]:
    """What is wrong with a stored notebook: unexecuted cells, errors, a broken run order."""
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    found = []
    if nb.metadata.get("kernelspec", {}).get("name") != KERNEL:
        found.append(f"kernelspec is not {KERNEL!r}")
    if "widgets" in nb.metadata:
        found.append("saved widget state in the metadata")
    counts = []
    for i, cell in enumerate(nb.cells):
        if "id" not in cell:
            found.append(f"cell {i} has no id")
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.execution_count is None:
            found.append(f"code cell {i} was never executed")
            continue
        counts.append(cell.execution_count)
        for out in cell.outputs:
            if out.output_type == "error":
                found.append(f"code cell {i} stored an error: {out.ename}")
    if not counts:
        found.append("no executed code cell: nbval would compare nothing")
    elif counts != list(range(1, len(counts) + 1)):
        found.append("execution counts are not 1..N: re-run it top to bottom in a fresh kernel")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"execute", "check"}:
        print("usage: python -m helpers.notebooks {execute|check} NOTEBOOK...")
        return 2
    status = 0
    for name in argv[1:]:
        if argv[0] == "execute":
            print(f"{name}: executed in {execute(name):.0f} s", flush=True)
        else:
            for problem in problems(name):
                print(f"{name}: {problem}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
