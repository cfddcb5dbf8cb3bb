"""Where the course's repository is, when there is one.

Also the one home of two things every layer needs: the course's public address
(:data:`REPOSITORY`, read from ``[project.urls]`` of pyproject.toml, or from the installed
distribution's metadata, which setuptools writes from the same table) and the environment
of a child Python process that must import this same ``helpers`` (:func:`child_env`).

A learner may have the course as a clone (``make`` installs it editable, so the
package lives inside the checkout) or installed from the repository or a wheel
(Colab, ``pip install``), with no checkout at all. What needs the repository's
files (requirements.txt, notebooks/, bench/) asks :func:`repo_root`; the tools
that only make sense in a clone call :func:`require_checkout`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

DISTRIBUTION = "smol-finetuning-course"
"""The course's name as a Python distribution (pyproject.toml)."""

_PACKAGE = Path(__file__).resolve().parent
PACKAGE_PARENT = _PACKAGE.parent
"""The folder that holds this ``helpers`` package: the checkout, or site-packages."""
BRANCH = "main"
"""The branch that the Colab copies and an installed course's downloads read from."""
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""What every child process of the course runs with: no hub, and no tokenizer threads that
fight the training threads for the cores."""


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


_URL_LINE = re.compile(r'^Repository\s*=\s*"([^"]+)"', re.M)


def repository(package: Path = _PACKAGE) -> str:
    """The course's repository address: ``[project.urls] Repository`` of the checkout's
    pyproject.toml, or the same entry of the installed distribution's metadata."""
    root = repo_root(package)
    if root is not None:
        found = _URL_LINE.search((root / "pyproject.toml").read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    try:
        for entry in importlib.metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "repository":
                return url.strip()
    except importlib.metadata.PackageNotFoundError:
        pass
    raise RuntimeError(
        "the course's repository address is written in pyproject.toml ([project.urls] "
        "Repository), and neither a checkout nor an installed course was found to read it from"
    )


REPOSITORY = repository()
"""The course's public repository (pyproject.toml's ``[project.urls] Repository``)."""


def child_env(
    base: Mapping[str, str] | None = None,
    *,
    offline: bool = True,
    imports_helpers: bool = True,
    **overrides: str,
) -> dict[str, str]:
    """The environment of a child Python process (a server, a launched rank, a fresh
    measuring process) that must import this same ``helpers``.

    The folder holding this package goes first on ``PYTHONPATH``, whether it is a checkout
    or site-packages, so the child never picks up another copy of the course (and never
    gets the text ``None`` there). A child of another interpreter (LitGPT's environment)
    passes ``imports_helpers=False``: an installed course's site-packages would bring this
    environment's libraries into that one. With `offline`, the hub switches are on.
    `overrides` are set last. `base` defaults to this process's environment.
    """
    env = dict(os.environ if base is None else base)
    if imports_helpers:
        paths = [str(PACKAGE_PARENT)]
        paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p not in ("", *paths)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if offline:
        env.update(OFFLINE)
    env.update(overrides)
    return env


def require_checkout(tool: str, package: Path = _PACKAGE) -> Path:
    """The repository root; or exit with a message (not a traceback) saying that `tool`
    needs a clone of the course."""
    root = repo_root(package)
    if root is None:
        clone = f"git clone {REPOSITORY}, then `make setup` in it"
        sys.exit(
            f"{tool} works on the course's repository (notebooks/, requirements.txt, bench/), "
            f"and this copy of the course is installed without one ({package}): run this from "
            f"a clone of the course: {clone}"
        )
    return root
