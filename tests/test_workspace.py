"""`make lab`'s working copies: the student copies, never overwritten, reset with a backup."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from helpers.grading import cells, student
from tools import workspace

ROOT = workspace.ROOT
CHAPTERS = workspace.chapters()


def _two_chapters(tmp_path: Path) -> Path:
    """A notebooks/ folder with the first two chapters that have exercises."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    with_exercises = [
        p
        for p in CHAPTERS
        if any(cells.is_solution(c) for c in nbformat.read(p, as_version=4).cells)
    ]
    assert len(with_exercises) >= 2
    for path in with_exercises[:2]:
        shutil.copy(path, folder / path.name)
    return folder


def _edit(path: Path, text: str = "# my own note") -> None:
    """What a learner does: write an answer and a note, and save."""
    nb = nbformat.read(path, as_version=4)
    solution = next((c for c in nb.cells if cells.is_solution(c)), None)
    if solution is not None:
        solution.source += f"\n{text}"
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The working copies of every chapter, made as `make lab` makes them."""
    folder = tmp_path_factory.mktemp("lab") / "my-notebooks"
    done = workspace.sync(folder)
    assert [p.name for p in done.created] == [p.name for p in CHAPTERS] and not done.kept
    return folder


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_a_working_copy_is_the_student_copy_and_holds_no_solution(copies, chapter):
    reference = nbformat.read(chapter, as_version=4)
    mine = nbformat.read(copies / chapter.name, as_version=4)
    assert mine == student.student_copy(reference)
    assert student.leaked_solutions(reference, mine) == []
    for ref_cell, cell in zip(reference.cells, mine.cells, strict=True):
        if cells.is_solution(ref_cell):
            assert cell.source == cells.blank_solution(ref_cell.source)
            assert cell.outputs == []
        if cells.is_graded(ref_cell):  # the checks stay, their verdicts go
            assert cell.source == ref_cell.source and cell.outputs == []


def test_sync_twice_keeps_the_learners_edits_and_adds_a_new_chapter(tmp_path):
    notebooks = _two_chapters(tmp_path)
    folder = tmp_path / "my-notebooks"
    first = workspace.sync(folder, notebooks)
    assert len(first.created) == 2 and first.kept == []
    assert (folder / "README.md").exists()
    edited = first.created[0]
    _edit(edited)
    mine = edited.read_bytes()
    (folder / "README.md").write_text("my notes")

    again = workspace.sync(folder, notebooks)
    assert again.created == [] and sorted(again.kept) == sorted(first.created)
    assert edited.read_bytes() == mine
    assert (folder / "README.md").read_text() == "my notes"
    assert "kept as you left them" in again.summary(folder)

    # the course gains a chapter, and the reference of an old one changes: only the new
    # chapter is written, the learner's copy of the changed one stays theirs
    shutil.copy(notebooks / edited.name, notebooks / "09_new_chapter.ipynb")
    ref = nbformat.read(notebooks / edited.name, as_version=4)
    ref.cells[0].source += "\nA sentence added upstream."
    nbformat.write(ref, notebooks / edited.name)
    later = workspace.sync(folder, notebooks)
    assert [p.name for p in later.created] == ["09_new_chapter.ipynb"]
    assert edited.read_bytes() == mine
    assert "new: 09_new_chapter.ipynb" in later.summary(folder)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_reset_restores_one_chapter_and_keeps_the_learners_file(tmp_path):
    notebooks = _two_chapters(tmp_path)
    folder = tmp_path / "my-notebooks"
    first, other = workspace.sync(folder, notebooks).created
    fresh = first.read_bytes()
    _edit(first)
    _edit(other)
    mine, theirs = first.read_bytes(), other.read_bytes()
    number = first.name[:2]
    now = datetime(2026, 11, 29, 1, 2, 3, tzinfo=timezone.utc)

    target, backup = workspace.reset(number, folder, notebooks, now=now)
    assert target == first and first.read_bytes() == fresh
    assert backup == folder / "backups" / f"{first.stem}.20261129-010203.ipynb"
    assert backup.read_bytes() == mine  # nothing lost
    assert other.read_bytes() == theirs  # the other chapter is untouched

    # reset again at the same second: a second backup, not an overwritten one
    _edit(first, "# second try")
    _, second = workspace.reset(first.stem, folder, notebooks, now=now)
    assert second != backup and second.name.endswith("-2.ipynb")
    assert backup.read_bytes() == mine and "# second try" in second.read_text()
    # a copy the learner never changed is replaced without a backup
    assert workspace.reset(first.name, folder, notebooks, now=now) == (first, None)
    assert len(list((folder / "backups").iterdir())) == 2
    # a chapter whose working copy is missing is simply created
    other.unlink()
    assert workspace.reset(other.name[:2], folder, notebooks) == (other, None)
    assert other.exists()


def test_a_chapter_is_named_by_number_or_name_and_a_wrong_one_lists_the_chapters():
    chapter = CHAPTERS[-1]
    number = chapter.name[:2]
    for name in (number, str(int(number)), chapter.stem, chapter.name, f"notebooks/{chapter.name}"):
        assert workspace.find_chapter(name) == chapter, name
    with pytest.raises(ValueError, match=r"no chapter '99'.*CHAPTER=03.*chapters: 00, 01"):
        workspace.find_chapter("99")
    assert workspace.main(["reset"]) == 2  # no chapter given: an error that says how


def test_the_command_line_syncs_and_resets(tmp_path, capsys):
    notebooks = _two_chapters(tmp_path)
    folder = tmp_path / "ws"
    args = ["--dir", str(folder), "--notebooks", str(notebooks)]
    assert workspace.main(["sync", *args]) == 0
    assert "created 2 working copies" in capsys.readouterr().out
    name = sorted(notebooks.iterdir())[0].name
    _edit(folder / name)
    assert workspace.main(["reset", name[:2], *args]) == 0
    out = capsys.readouterr().out
    assert f"{name}: a fresh copy; yours is in " in out and "backups" in out
    assert workspace.main(["reset", "77", *args]) == 2
    assert "no chapter '77'" in capsys.readouterr().err


def test_the_working_folder_and_its_outputs_are_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["my-notebooks/01_x.ipynb", "my-notebooks/outputs/sft/adapter.bin"]
    for path in paths:
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert result.returncode == 0, f"{path} is not git-ignored"
    assert workspace.WORKSPACE == ROOT / "my-notebooks"


# --- the Makefile targets --------------------------------------------------------------------


def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`make` with this test's Python as the course's venv, never re-installing it."""
    venv = Path(sys.prefix)
    return subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def make():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return _make


def test_make_lab_makes_the_working_copies_then_opens_jupyterlab_on_them(make):
    result = make("-n", "-o", f"{sys.prefix}/.model-ready", "lab")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sync = next(i for i, line in enumerate(lines) if "-m tools.workspace sync" in line)
    lab = next(i for i, line in enumerate(lines) if "jupyter lab" in line)
    assert sync < lab
    assert "--dir my-notebooks" in lines[sync]
    assert "--notebook-dir=my-notebooks" in lines[lab]


def test_make_lab_copies_twice_keeps_edits_and_make_lab_reset_keeps_a_backup(make, tmp_path):
    folder = tmp_path / "my-notebooks"
    result = make("lab-copies", f"WORKSPACE={folder}")
    assert result.returncode == 0, result.stderr
    assert f"created {len(CHAPTERS)} working copies" in result.stdout
    chapter = folder / CHAPTERS[-1].name
    _edit(chapter)
    mine = chapter.read_bytes()

    result = make("lab-copies", f"WORKSPACE={folder}")
    assert result.returncode == 0, result.stderr
    assert "kept as you left them" in result.stdout and chapter.read_bytes() == mine

    result = make("lab-reset", f"WORKSPACE={folder}", f"CHAPTER={chapter.name[:2]}")
    assert result.returncode == 0, result.stderr
    backups = list((folder / "backups").iterdir())
    assert len(backups) == 1 and backups[0].read_bytes() == mine
    assert chapter.read_bytes() != mine
    assert nbformat.read(chapter, as_version=4) == student.student_copy(
        nbformat.read(CHAPTERS[-1], as_version=4)
    )

    result = make("lab-reset", f"WORKSPACE={folder}")  # no CHAPTER
    assert result.returncode != 0 and "CHAPTER=03" in result.stderr
