"""Which part of the Python reference does a paragraph come from? A classification task.

The task
    Each example gives the model one paragraph of Python's documentation and asks
    which of four parts of the reference it comes from; the answer is one label:

    * ``statements``:     the simple and compound statements ("for", "import", "try", ...);
    * ``expressions``:    operators, calls, displays, comparisons, lambdas, ...;
    * ``data model``:     objects, the type hierarchy and the special ``__methods__``;
    * ``built-in types``: the standard library's built-in types (str methods, sequences,
      mappings, code and type objects, truth testing).

    A model has to read the paragraph to answer: the label is not in it.

How it is generated
    From the ``python-docs`` snapshot (``python_docs.py``): every topic in ``SECTIONS`` is
    split into paragraphs at blank lines; a paragraph is kept if it is prose (not a
    grammar rule, a code example or a table) of ``MIN_CHARS`` to ``MAX_CHARS`` characters,
    with its line breaks and indentation collapsed. Topics outside ``SECTIONS`` (the
    lexical analysis, the execution model, the debugger, format strings) are left out.
    Each label keeps at most ``PER_LABEL`` paragraphs, in document order, and every
    ``TEST_EVERY``-th of them goes to the test split, so both splits have the same label
    proportions and no paragraph is in both. The result is fixed: it depends only on the
    committed snapshot.

Provenance and licence
    The paragraphs are text of the Python documentation, (c) Python Software Foundation,
    under the PSF License Agreement (see ``python_docs.py``); the labels and this
    generator are part of the course (Apache-2.0).

Regenerate the committed file with ``python -m helpers.data.doc_sections``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .python_docs import read_snapshot

FILE = Path(__file__).resolve().parent / "doc_sections.jsonl"
LABELS = ("statements", "expressions", "data model", "built-in types")
SYSTEM_PROMPT = (
    "Which part of the Python reference is this paragraph from? "
    "Answer with one of: statements, expressions, data model, built-in types."
)
MIN_CHARS, MAX_CHARS = 120, 420
PER_LABEL = 100
TEST_EVERY = 4  # every 4th kept paragraph of a label is a test example

SECTIONS = {
    "statements": (
        "assert assignment async augassign break class compound continue del else for "
        "function global if import nonlocal pass raise return try while with yield"
    ),
    "expressions": (
        "atom-identifiers atom-literals attribute-references await binary bitwise booleans "
        "calls comparisons conversions dict exprlists in lambda lists operator-summary power "
        "shifting slicings subscriptions unary"
    ),
    "data model": (
        "attribute-access callable-types context-managers customization numeric-types "
        "objects sequence-types specialnames types"
    ),
    "built-in types": (
        "bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects "
        "specialattrs string-methods truth typesfunctions typesmapping typesmethods "
        "typesmodules typesseq typesseq-mutable"
    ),
}


def _is_prose(paragraph: str) -> bool:
    """A paragraph of sentences, not a grammar rule, code, a table or a heading."""
    markers = ("::=", ">>>", "+--", "====", "****", "----", "| ")
    if any(m in paragraph for m in markers):
        return False
    words = paragraph.split()
    return len(words) >= 12 and paragraph.rstrip().endswith((".", ":", ")"))


def paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one topic, whitespace collapsed, of an allowed length."""
    kept = []
    for block in text.split("\n\n"):
        paragraph = " ".join(block.split())
        if MIN_CHARS <= len(paragraph) <= MAX_CHARS and _is_prose(paragraph):
            kept.append(paragraph)
    return kept


def build_rows() -> list[dict]:
    """Every example, with its label, source topic and split."""
    texts = {r["topic"]: r["text"] for r in read_snapshot()}
    rows = []
    for label in LABELS:
        found = [(topic, p) for topic in SECTIONS[label].split() for p in paragraphs(texts[topic])]
        seen: set[str] = set()
        unique = [(t, p) for t, p in found if not (p in seen or seen.add(p))]
        for i, (topic, paragraph) in enumerate(unique[:PER_LABEL]):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
            rows.append({"label": label, "topic": topic, "split": split, "text": paragraph})
    return rows


def to_example(row: dict) -> dict:
    """A row as trl's conversational prompt-completion example."""
    return {
        **row,
        "prompt": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": row["text"]},
        ],
        "completion": [{"role": "assistant", "content": row["label"]}],
    }


def write_file(path: Path = FILE) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in build_rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_file(path: Path = FILE) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


if __name__ == "__main__":
    print(write_file())
