"""The course's bundled data sets, loaded as Hugging Face ``datasets`` objects.

Nothing is downloaded: each data set is a file in this folder, written by a
generator in this folder (see each module's docstring for provenance and licence).

============ ========================================================= ==========
name         what                                                      licence
============ ========================================================= ==========
yoda         English -> Yoda-speak, 1,200 train / 200 test,             Apache-2.0
             conversational prompt-completion (``yoda.py``)
python-docs  Python's reference documentation, one row per topic       PSF
             (``python_docs.py`` snapshots it from ``pydoc_data``)
doc-sections which part of the Python reference a paragraph is from:   PSF text,
             4 labels, 299 train / 99 test, prompt-completion          Apache-2.0
             (``doc_sections.py`` derives it from python-docs)          labels
yoda-pairs   preference pairs on the Yoda sentences: chosen = the      Apache-2.0
             right answer, rejected = English, a near miss or the
             chapter-00 adapter's own mistake (``yoda_pairs.py``)
larger-      which of two numbers (10-99) is larger, 400 train / 200   Apache-2.0
number       test, prompts with a checkable answer (``larger_number.py``)
tool-calls   requests answered with tool calls (one, two) or plain     Apache-2.0
             text, 320 train / 40 validation / 80 test, conversational
             with a ``tools`` column (``tool_calls.py``)
============ ========================================================= ==========
"""

from __future__ import annotations

import json
from pathlib import Path

from . import larger_number, tool_calls
from .doc_sections import read_file, to_example
from .python_docs import read_snapshot
from .yoda_pairs import pair_rows

HERE = Path(__file__).resolve().parent

DATASETS = {
    "yoda": "English -> Yoda-speak translation (conversational prompt/completion, exact match)",
    "python-docs": "Python's reference documentation, plain text (causal language modelling)",
    "doc-sections": "Python docs paragraph -> part of the reference (4 labels, classification)",
    "yoda-pairs": "Preference pairs on the Yoda task (prompt, chosen, rejected; DPO)",
    "larger-number": "Which of two numbers is larger (prompt and checkable answer; GRPO)",
    "tool-calls": "Requests -> tool calls or plain text (conversational, with tools; chapter 12)",
}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _yoda_rows(split: str) -> list[dict]:
    rows = []
    for r in _read_jsonl(HERE / f"yoda_{split}.jsonl"):
        rows.append(
            {
                "id": r["id"],
                "shape": r["shape"],
                "english": r["english"],
                "yoda": r["yoda"],
                # trl's conversational prompt-completion format: the loss is computed
                # on the completion only, the prompt is context.
                "prompt": r["messages"][:-1],
                "completion": r["messages"][-1:],
            }
        )
    return rows


def load_dataset(name: str, split: str | None = None):
    """Load a bundled data set: a ``DatasetDict`` (train/test), or one ``Dataset`` by split."""
    from datasets import Dataset, DatasetDict

    if name not in DATASETS:
        known = ", ".join(repr(n) for n in DATASETS)
        raise ValueError(f"Unknown data set {name!r}. The course bundles: {known}.")
    if name == "tool-calls":
        splits = tool_calls.dataset_splits()
        if split not in (None, *splits):
            raise ValueError(f"split={split!r}: use one of {sorted(splits)} or None (all).")
        return splits[split] if split else DatasetDict(splits)
    if split not in (None, "train", "test"):
        raise ValueError(f"split={split!r}: use 'train', 'test' or None (both).")
    if name == "yoda":
        splits = {s: Dataset.from_list(_yoda_rows(s)) for s in ("train", "test")}
    elif name == "doc-sections":
        rows = read_file()
        splits = {
            s: Dataset.from_list([to_example(r) for r in rows if r["split"] == s])
            for s in ("train", "test")
        }
    elif name == "larger-number":
        splits = {
            s: Dataset.from_list([larger_number.to_example(r) for r in larger_number.read_split(s)])
            for s in ("train", "test")
        }
    elif name == "yoda-pairs":
        splits = {s: Dataset.from_list(pair_rows(s)) for s in ("train", "test")}
    else:
        records = read_snapshot()
        splits = {
            s: Dataset.from_list(
                [{"topic": r["topic"], "text": r["text"]} for r in records if r["split"] == s]
            )
            for s in ("train", "test")
        }
    return splits[split] if split else DatasetDict(splits)


# What each trl data format needs; used to name the problem when a data set does not fit.
# trl looks for "input_ids" first: a data set that has it is used as is (no chat template,
# no EOS added; without a "labels" column every token carries loss).
FORMATS = {
    "tokenized": ({"input_ids"}, "an 'input_ids' column of token ids (already tokenized)"),
    "language modelling": ({"text"}, "a 'text' column of strings"),
    "conversational": ({"messages"}, "a 'messages' column of [{'role': ..., 'content': ...}]"),
    "prompt-completion": ({"prompt", "completion"}, "'prompt' and 'completion' columns"),
}


def check_sft_format(dataset) -> str:
    """Return the trl format of `dataset`, or raise a ValueError naming what is wrong."""
    columns = set(dataset.column_names)
    for fmt, (needed, _) in FORMATS.items():
        if needed <= columns:
            if len(dataset) == 0:
                raise ValueError("The data set is empty: there is nothing to train on.")
            if fmt == "conversational":
                _check_messages(dataset[0]["messages"], "messages")
            if fmt == "prompt-completion" and isinstance(dataset[0]["prompt"], list):
                _check_messages(dataset[0]["prompt"] + dataset[0]["completion"], "prompt")
            return fmt
    expected = "; or ".join(desc for _, desc in FORMATS.values())
    raise ValueError(
        f"The data set has columns {sorted(columns)}, which match no format SFT understands. "
        f"Expected {expected}. Rename or map your columns (dataset.rename_column / dataset.map)."
    )


def _check_messages(messages, column: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(
            f"Column {column!r} should hold a list of messages, found {type(messages).__name__}."
        )
    for m in messages:
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise ValueError(
                f"Each message in {column!r} needs 'role' and 'content' keys; found {m!r}."
            )
