"""Create the course's virtual environment, or say what the system lacks: ``python3 -m
tools.makevenv .venv`` (``make`` runs it with the system's Python, before anything is
installed, so it imports nothing outside the standard library).

Debian and Ubuntu ship Python without ``ensurepip``: there ``python3 -m venv`` fails
(or leaves a folder with no pip in it) until the package ``python3-venv`` is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

TIMEOUT = 300
"""Seconds `python -m venv` (it runs ensurepip) or a pip check may take before we give up."""


def has_pip(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    try:
        check = subprocess.run(
            [str(python), "-m", "pip", "--version"], capture_output=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return False
    return check.returncode == 0


def advice(error: str, version: tuple[int, int] = tuple(sys.version_info[:2])) -> str:
    """What to tell a learner whose `python -m venv` failed with `error`."""
    minor = f"python{version[0]}.{version[1]}-venv"
    last = next((line for line in reversed(error.strip().splitlines()) if line.strip()), "")
    return (
        "`python3 -m venv` does not work here"
        + (f" ({last.strip()})" if last else "")
        + f". On Debian or Ubuntu install the package python3-venv ({minor} for this "
        f"Python): `sudo apt install python3-venv {minor}`, then run make again. Elsewhere, "
        "install a Python 3.10+ that includes venv and ensurepip (python.org, Homebrew, conda)."
    )


def create(
    venv: str | Path,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    ready: Callable[[Path], bool] = has_pip,
) -> str | None:
    """Make `venv` a virtual environment with pip (a half-made one is cleared first);
    None when it is ready, else the advice to print."""
    venv = Path(venv)
    if ready(venv):
        return None
    command = [sys.executable, "-m", "venv", "--clear", str(venv)]
    try:
        made = run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(venv, ignore_errors=True)
        return (
            f"`{' '.join(command)}` did not finish in {TIMEOUT} s (ensurepip stuck on a slow "
            "disk?): run it by hand to see where it hangs, then run make again"
        )
    if made.returncode == 0 and ready(venv):
        return None
    shutil.rmtree(venv, ignore_errors=True)  # no half-made venv for the next `make` to trust
    return advice((made.stderr or "") + (made.stdout or "") or "no pip in the new venv")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m tools.makevenv VENV_FOLDER", file=sys.stderr)
        return 2
    problem = create(argv[0])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
