"""A real-text corpus for the causal-LM chapters: Python's reference documentation.

Provenance
    CPython ships the text of its language reference as ``pydoc_data.topics``
    (what ``help("with")`` prints). This module snapshots that text, one record
    per topic, into ``python_docs.jsonl.gz``, so every machine (and every
    Python version, Colab's included) trains and evaluates on the same bytes.
Licence
    The text is part of the Python documentation, (c) Python Software
    Foundation, distributed under the PSF License Agreement (the same licence
    as Python itself), which permits redistribution with this notice.

Regenerate the snapshot with ``python -m helpers.data.python_docs``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "python_docs.jsonl.gz"
TEST_EVERY = 8  # every 8th topic (sorted by name) is held out for evaluation


def build_records() -> list[dict]:
    """One record per topic, sorted by name, with its split assigned."""
    from pydoc_data.topics import topics

    version = ".".join(map(str, sys.version_info[:3]))
    records = []
    for i, name in enumerate(sorted(topics)):
        records.append(
            {
                "topic": name,
                "split": "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train",
                "text": topics[name].strip() + "\n",
                "source": f"pydoc_data.topics (Python {version})",
            }
        )
    return records


def write_snapshot(path: Path = SNAPSHOT) -> Path:
    """Write the records as gzip'd JSON lines, byte for byte reproducible (mtime 0)."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_records())
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(payload.encode("utf-8"))
    return path


def read_snapshot(path: Path = SNAPSHOT) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


if __name__ == "__main__":
    print(write_snapshot())
