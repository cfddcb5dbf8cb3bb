"""The learner's working copies of the chapters, which ``make lab`` opens.

``python -m tools.workspace`` (run by ``make lab``) fills ``my-notebooks/`` with the
student copy of every chapter that has no working copy yet: solutions replaced by
``...``, checks kept (see ``helpers.grading.student``). A working copy that exists is
never written again, so a learner's answers and notes survive ``make lab``, a
``git pull`` and a new chapter (which simply appears beside them).

``python -m tools.workspace reset 03`` (``make lab-reset CHAPTER=03``) starts one
chapter over: the learner's file is moved to ``my-notebooks/backups/`` first, then a
fresh student copy is written. Nothing is deleted.

The folder is git-ignored, and so is the ``outputs/`` folder that the chapters write
next to themselves. The reference chapters, with their solutions and stored outputs,
stay in ``notebooks/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from helpers import repo
from helpers.grading import cells, student

ROOT = repo.require_checkout("python -m tools.workspace")
NOTEBOOKS = ROOT / "notebooks"
WORKSPACE = ROOT / "my-notebooks"
BACKUPS = "backups"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"

README = """\
# Your working copies

One notebook per chapter, made for you by `make lab` from the chapters in
`../notebooks/` with the exercises' answers left for you to write (`...`). Edit
them freely: `make lab` never overwrites a file here, and a new chapter of the
course is added beside them when it appears.

- Start a chapter over: `make lab-reset CHAPTER=03` (your file is moved to
  `backups/` first, nothing is lost).
- The reference chapters, with the solutions and the outputs the tests check, are
  in `../notebooks/`. Look there when you are stuck, after trying.
- Files that a chapter writes go to `outputs/` here; git ignores this whole folder.
"""


@dataclass
class Sync:
    """What one ``sync`` did: the working copies it created and those it left alone."""

    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    def summary(self, workspace: Path) -> str:
        where = _shown(workspace)
        if not self.created:
            return f"{where}: {len(self.kept)} working copies, kept as you left them"
        names = ", ".join(p.name for p in self.created)
        if not self.kept:
            return f"{where}: created {len(self.created)} working copies ({names})"
        return f"{where}: {len(self.kept)} working copies kept as you left them; new: {names}"


def _shown(path: Path) -> str:
    """A path as a message shows it: relative to the course when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT)) + "/"
    except ValueError:
        return str(path) + "/"


def chapters(notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    return sorted(Path(notebooks_dir).glob(CHAPTER_GLOB))


def _write_new(target: Path, nb) -> None:
    """Write a notebook through a temporary file, so an interrupted run leaves no half file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".ipynb")
    os.close(handle)
    try:
        nbformat.write(nb, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _learner_copy(chapter: Path):
    try:
        return student.student_copy(nbformat.read(chapter, as_version=4))
    except cells.ConventionError as err:
        raise cells.ConventionError(f"{chapter.name}: {err}") from err


def sync(workspace: Path = WORKSPACE, notebooks_dir: Path = NOTEBOOKS) -> Sync:
    """Create the working copies that are missing; never touch one that exists."""
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    readme = workspace / "README.md"
    if not readme.exists():
        readme.write_text(README, encoding="utf-8")
    done = Sync()
    for chapter in chapters(notebooks_dir):
        target = workspace / chapter.name
        if target.exists():
            done.kept.append(target)
            continue
        _write_new(target, _learner_copy(chapter))
        done.created.append(target)
    return done


def find_chapter(name: str, notebooks_dir: Path = NOTEBOOKS) -> Path:
    """The chapter that `name` means: ``3``, ``03``, ``03_lora`` or ``03_lora.ipynb``."""
    known = chapters(notebooks_dir)
    stem = Path(str(name).strip()).name.removesuffix(".ipynb")
    if stem.isdigit():
        stem = f"{int(stem):02d}"
    matches = [p for p in known if p.stem == stem or p.stem.split("_", 1)[0] == stem]
    if len(matches) != 1:
        listed = ", ".join(p.stem.split("_", 1)[0] for p in known)
        raise ValueError(
            f"no chapter {name!r}: give its number, e.g. `make lab-reset CHAPTER=03` "
            f"(chapters: {listed})"
        )
    return matches[0]


def backup_path(target: Path, now: datetime | None = None) -> Path:
    """A new file name in backups/ for `target`, stamped with the time (UTC)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    folder = target.parent / BACKUPS
    path = folder / f"{target.stem}.{stamp}.ipynb"
    n = 2
    while path.exists():
        path = folder / f"{target.stem}.{stamp}-{n}.ipynb"
        n += 1
    return path


def reset(
    name: str,
    workspace: Path = WORKSPACE,
    notebooks_dir: Path = NOTEBOOKS,
    now: datetime | None = None,
) -> tuple[Path, Path | None]:
    """A fresh working copy of one chapter; (its path, where the learner's file went or None).

    A working copy identical to the fresh one is replaced without a backup (there is
    nothing of the learner's in it).
    """
    chapter = find_chapter(name, notebooks_dir)
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / chapter.name
    fresh = _learner_copy(chapter)
    backup = None
    if target.exists():
        if target.read_text(encoding="utf-8") == nbformat.writes(fresh) + "\n":
            return target, None
        backup = backup_path(target, now)
        backup.parent.mkdir(exist_ok=True)
        os.replace(target, backup)
    _write_new(target, fresh)
    return target, backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.workspace",
        description="Create your working copies of the chapters (never overwrites one), "
        "or reset one chapter (your file is kept in backups/).",
    )
    parser.add_argument("action", nargs="?", choices=["sync", "reset"], default="sync")
    parser.add_argument("chapter", nargs="?", help="reset only: the chapter, e.g. 03")
    parser.add_argument("--dir", type=Path, default=WORKSPACE, help="the working folder")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.action == "sync":
            print(sync(args.dir, args.notebooks).summary(args.dir))
            return 0
        if not args.chapter:
            raise ValueError("say which chapter to reset, e.g. `make lab-reset CHAPTER=03`")
        target, backup = reset(args.chapter, args.dir, args.notebooks)
    except ValueError as err:  # ConventionError included
        print(f"error: {err}", file=sys.stderr)
        return 2
    if backup is None:
        print(f"{_shown(target.parent)}{target.name}: unchanged, nothing to back up")
    else:
        print(
            f"{_shown(target.parent)}{target.name}: a fresh copy; yours is in "
            f"{_shown(backup.parent)}{backup.name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
