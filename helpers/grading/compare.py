"""Compare a cell's fresh outputs with its stored ones by the rules of strict nbval.

The rules are those of nbval 0.11.0 (pinned in requirements.txt), run without
``--nbval-lax``:

- every code cell is compared unless it is tagged ``nbval-ignore-output`` (or
  carries the comment ``# NBVAL_IGNORE_OUTPUT``); ``nbval-skip`` skips it, and
  ``raises-exception`` lets it raise;
- streams of the same name are merged, and ``\\r`` and backspaces are applied;
- every output field and every MIME type under ``data`` is compared, except
  metadata, tracebacks, execution counts, widget model ids, ``image/png`` and
  ``image/jpeg``: a figure is compared by its text, ``<Figure size ...>``;
- each value is passed through the sanitize regexes (``helpers/grading/sanitize.cfg``,
  shipped with the package, so the regrader works from an installed course)
  first; for each field the list of values must agree in number and in order.

What is reused from nbval, imported: its stream merging (``coalesce_streams``,
``transform_streams_for_comparison``), its sanitize-file parser and its tag and
comment markers. What is re-implemented: the comparison itself, which nbval has
only as a method of its pytest item (``IPyNbCell.compare_outputs``), tied to
pytest's reporting. ``tests/test_grading.py`` checks that both give the same
verdicts, so a change in nbval shows up there.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections import defaultdict
from pathlib import Path

import nbformat

try:
    from nbval import plugin as _nbval
except ModuleNotFoundError as err:  # Colab's install cell leaves the test tools out
    from .. import pins

    raise ModuleNotFoundError(
        "regrading compares outputs by nbval's rules and needs nbval, which is not installed "
        f"here: pip install nbval=={pins.read_pins().get('nbval', '')}"
    ) from err

SANITIZE_FILE = Path(__file__).resolve().parent / "sanitize.cfg"
"""The course's sanitize rules, package data: ``make test`` gives nbval the same file."""

SKIP_COMPARE = (
    "metadata",
    "traceback",
    "prompt_number",
    "output_type",
    "name",
    "execution_count",
    "application/vnd.jupyter.widget-view+json",
    "image/png",
    "image/jpeg",
)
"""What nbval leaves out of the comparison (without --nbdime, images are not compared)."""


def load_sanitizers(path: str | Path | None = SANITIZE_FILE) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in order ([] for None)."""
    if path is None:
        return []
    return list(_nbval.get_sanitize_patterns(Path(path).read_text(encoding="utf-8")))


def sanitize(value, patterns: list[tuple[str, str]]):
    """Apply every sanitize regex to a string (other values pass unchanged)."""
    if not isinstance(value, str):
        return value
    for regex, replacement in patterns:
        value = re.sub(regex, replacement, value)
    return value


def cell_options(cell) -> dict[str, bool]:
    """nbval's options for a code cell: check (compare outputs), skip, check_exception."""
    options = defaultdict(bool, _nbval.find_metadata_tags(cell.get("metadata", {})))
    options.update(dict(_nbval.find_comment_markers(cell.get("source", ""))))
    options.setdefault("check", True)
    return {key: bool(options[key]) for key in ("check", "skip", "check_exception")}


def merged(outputs) -> list:
    """A copy of the outputs with streams merged as nbval merges them (input untouched)."""
    nodes = [nbformat.from_dict(copy.deepcopy(dict(out))) for out in outputs]
    return _nbval.coalesce_streams(nodes)


def _flatten(outputs, patterns) -> dict[str, list]:
    flat = defaultdict(list)
    for out in _nbval.transform_streams_for_comparison(outputs):
        for key, value in out.items():
            if key in SKIP_COMPARE:
                continue
            if key == "data":
                for mime, content in value.items():
                    if mime not in SKIP_COMPARE:
                        flat[mime].append(sanitize(content, patterns))
            else:
                flat[key].append(sanitize(value, patterns))
    return flat


def _show(value, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(key: str, stored, fresh) -> str:
    if isinstance(stored, str) and isinstance(fresh, str):
        diff = difflib.unified_diff(
            stored.splitlines(), fresh.splitlines(), "stored", "fresh run", lineterm="", n=0
        )
        lines = [line for line in diff if not line.startswith("@@")]
        if len(lines) > 12:
            lines = lines[:12] + ["..."]
        return f"{key} differs:\n" + "\n".join(lines)
    return f"{key} differs: stored {_show(stored)}, fresh run {_show(fresh)}"


def compare(fresh, stored, patterns: list[tuple[str, str]]) -> str | None:
    """None when `fresh` and `stored` outputs agree under nbval's rules, else what differs.

    Both are lists of nbformat outputs, as a cell stores them; streams are merged here.
    """
    test = _flatten(merged(fresh), patterns)
    ref = _flatten(merged(stored), patterns)
    if set(ref) - set(test):
        return f"missing from the fresh run: {', '.join(sorted(set(ref) - set(test)))}"
    if set(test) - set(ref):
        return f"not in the stored output: {', '.join(sorted(set(test) - set(ref)))}"
    for key, ref_values in ref.items():
        test_values = test[key]
        if len(ref_values) != len(test_values):
            return f"{key}: {len(ref_values)} stored output(s), {len(test_values)} in the fresh run"
        for stored_value, fresh_value in zip(ref_values, test_values, strict=True):
            if stored_value != fresh_value:
                return _describe(key, stored_value, fresh_value)
    return None
