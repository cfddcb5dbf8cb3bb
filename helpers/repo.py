"""Where the course's repository is, when there is one.

A learner may have the course as a clone (``make`` installs it editable, so the
package lives inside the checkout) or installed from the repository or a wheel
(Colab, ``pip install``), with no checkout at all. What needs the repository's
files (requirements.txt, notebooks/, bench/) asks :func:`repo_root`; the tools
that only make sense in a clone call :func:`require_checkout`.
"""

from __future__ import annotations

import sys
from pathlib import Path

DISTRIBUTION = "smol-finetuning-course"
"""The course's name as a Python distribution (pyproject.toml)."""

_PACKAGE = Path(__file__).resolve().parent


def repo_root(package: Path = _PACKAGE) -> Path | None:
    """The checkout that holds the ``helpers`` package at `package`, or None when the
    package is installed (site-packages) and no checkout is around it."""
    root = package.parent
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and (root / "requirements.txt").is_file()):
        return None
    if f'name = "{DISTRIBUTION}"' not in pyproject.read_text(encoding="utf-8"):
        return None  # some other project's pyproject.toml
    return root


def require_checkout(tool: str, package: Path = _PACKAGE) -> Path:
    """The repository root; or exit with a message (not a traceback) saying that `tool`
    needs a clone of the course."""
    root = repo_root(package)
    if root is None:
        try:
            from .colab import REPOSITORY  # the one place the address is written

            clone = f"git clone {REPOSITORY}, then `make setup` in it"
        except ImportError:  # colab.py needs nbformat, which a bare install may lack
            clone = "git clone the course's repository, then `make setup` in it"
        sys.exit(
            f"{tool} works on the course's repository (notebooks/, requirements.txt, bench/), "
            f"and this copy of the course is installed without one ({package}): run this from "
            f"a clone of the course: {clone}"
        )
    return root
