"""Execute chapter notebooks the way the tests check them, and check their hygiene.

``python -m tools.notebooks execute notebooks/00_tldr.ipynb`` re-runs a notebook
top to bottom in a fresh ``python3`` kernel (working directory: the notebook's
folder) and stores its outputs; ``python -m tools.notebooks check`` lists what
would make a stored notebook untrustworthy under nbval, or unfit to publish (see
``problems``; the same command checks the generated notebooks under ``colab/``).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import sys
import time
import warnings
from pathlib import Path

from helpers import pins
from helpers.repo import repo_root, require_checkout
from tools.colab import BADGE_ID, INSTALL_ID

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


ROOT = repo_root()
"""The checkout (None when the course is installed without one)."""

_PRIVATE_PATH = re.compile(
    r"(?<![\w.~-])(?:/root(?=[/\s'\"]|$)|/home/[^/\s'\"]+|/Users/[^/\s'\"]+"
    r"|[A-Za-z]:\\{1,2}Users\\{1,2}[^\\\s'\"]+)"
)
"""Home folders (and so user names) in an output: /root, /home/NAME, /Users/NAME, Windows ones."""


def _output_texts(output) -> list[str]:
    """The text an output shows: streams, text-like MIME types, error messages (not images)."""
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return [output.ename, output.evalue, *output.traceback]
    texts = []
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            texts.append(value if isinstance(value, str) else str(value))
    return texts


def private_paths(text: str) -> list[str]:
    """Absolute paths that reveal a home folder, a user name or this checkout's location."""
    found = [m.group(0) for m in _PRIVATE_PATH.finditer(text)]
    for private in dict.fromkeys(str(p) for p in (ROOT, Path.home()) if p is not None):
        if private in ("/", ""):
            continue
        if private in text and not any(private.startswith(f) for f in found):
            found.append(private)
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def installed_by(roots: frozenset[str], no_deps: frozenset[str] = frozenset()) -> frozenset[str]:
    """The distributions that installing `roots` brings: them and their dependencies, transitively.

    Read from the installed packages' metadata (extras left out, environment markers
    evaluated here). Packages in `no_deps` are installed without their dependencies.
    """
    import importlib.metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in no_deps:
            continue
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(_canonical(requirement.name))
    return frozenset(seen)


def pinned_distributions(colab: bool = False) -> frozenset[str]:
    """What requirements.txt installs (with dependencies); in Colab, what its install cell does."""
    names = set(pins.read_pins())
    if colab:
        names -= set(pins.COLAB_KEEPS) - {"torch"}  # Colab has its own torch
    no_deps = frozenset(_canonical(p.split("==")[0]) for p in pins.no_deps_packages())
    return installed_by(frozenset(_canonical(n) for n in names), no_deps)


@functools.cache
def _import_owners() -> dict[str, set[str]]:
    import importlib.metadata

    owners: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        owners.setdefault(module, set()).update(_canonical(d) for d in dists)
    return owners


def imported_modules(source: str) -> set[str]:
    """Top-level names of the modules a code cell imports (IPython magics understood)."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def unresolved_imports(nb, colab: bool = False) -> list[str]:
    """Imports that neither the standard library, `helpers` nor the pinned packages provide."""
    allowed = pinned_distributions(colab)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            modules = imported_modules(cell.source)
        except SyntaxError as err:
            found.append(f"code cell {i} is not valid Python: {err.msg}")
            continue
        for module in sorted(modules):
            if module in sys.stdlib_module_names or module in ("helpers", "__future__"):
                continue
            owners = _import_owners().get(module, set())
            if not owners & allowed:
                why = f"from {', '.join(sorted(owners))}" if owners else "not installed"
                found.append(
                    f"code cell {i} imports {module!r} ({why}), which the pinned "
                    "dependencies do not install: pin it in requirements.txt or drop it"
                )
    return found


def problems(path: str | Path) -> list[str]:
    """What is wrong with a stored notebook (an empty list when nothing is).

    Every notebook: kernelspec python3, no saved widget state, every cell with a
    unique id, every import provided by the standard library, ``helpers`` or the
    pinned dependencies. A chapter (``notebooks/``): executed top to bottom in one
    run (execution counts 1..N), no stored error, no absolute path or user name in
    an output. A Colab notebook (a folder named ``colab``) is stored unexecuted: no
    outputs and no execution counts, and it opens with its badge and install cells.
    """
    import nbformat

    path = Path(path)
    colab = path.resolve().parent.name == "colab"
    with warnings.catch_warnings():  # repaired ids are reported below, from the file itself
        warnings.simplefilter("ignore", nbformat.warnings.DuplicateCellId)
        warnings.simplefilter("ignore", nbformat.warnings.MissingIDFieldWarning)
        nb = nbformat.read(path, as_version=4)
    found = []
    if nb.metadata.get("kernelspec", {}).get("name") != KERNEL:
        found.append(f"kernelspec is not {KERNEL!r}")
    if "widgets" in nb.metadata:
        found.append("saved widget state in the metadata")
    ids: set[str] = set()
    # ids as stored: nbformat repairs missing or repeated ids when it reads a notebook
    raw = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(raw.get("cells", [])):
        if "id" not in cell:
            found.append(f"cell {i} has no id")
        elif cell["id"] in ids:
            found.append(f"cell {i} repeats the id {cell['id']!r}")
        else:
            ids.add(cell["id"])
    found += _colab_problems(nb) if colab else _chapter_problems(nb)
    found += unresolved_imports(nb, colab=colab)
    return found


def _chapter_problems(nb) -> list[str]:
    found = []
    counts = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if out.output_type == "error":
                found.append(f"code cell {i} stored an error: {out.ename}")
            for text in _output_texts(out):
                for private in private_paths(text):
                    found.append(f"code cell {i} shows an absolute path or user name: {private}")
        if not cell.source.strip():
            continue
        if cell.execution_count is None:
            found.append(f"code cell {i} was never executed")
            continue
        counts.append(cell.execution_count)
    if not counts:
        found.append("no executed code cell: nbval would compare nothing")
    elif counts != list(range(1, len(counts) + 1)):
        found.append("execution counts are not 1..N: re-run it top to bottom in a fresh kernel")
    return found


def _colab_problems(nb) -> list[str]:
    found = []
    if [c.get("id") for c in nb.cells[:2]] != [BADGE_ID, INSTALL_ID]:
        found.append(f"a Colab notebook starts with the cells {BADGE_ID!r} and {INSTALL_ID!r}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            found.append(f"code cell {i} stores outputs: Colab notebooks are stored unexecuted")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"execute", "check"}:
        print("usage: python -m tools.notebooks {execute|check} NOTEBOOK...")
        return 2
    if argv[0] == "execute":
        require_checkout("python -m tools.notebooks execute")
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
