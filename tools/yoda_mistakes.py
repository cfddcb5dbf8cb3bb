"""Regenerate ``helpers/data/yoda_adapter_mistakes.jsonl``: chapter 00's adapter's wrong answers.

``python -m tools.yoda_mistakes`` (a few minutes on a CPU). The preference pairs of chapter 10
(``helpers.data.yoda_pairs``) read the file; only this tool trains and generates, so the data
layer never depends on training.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.data import yoda_pairs
from helpers.evaluation import exact_match
from helpers.generation import generate
from helpers.models import load_model
from helpers.recipes import YODA_RECIPE, yoda_adapter
from helpers.training import load_adapter


def sample_mistakes(limit_train: int = 600, batch_size: int = 25) -> list[dict]:
    """Greedy answers of chapter 00's adapter (4-bit base) that are not exact matches.

    Every test sentence and the first `limit_train` train sentences are answered.
    """
    base, tokenizer = load_model(YODA_RECIPE["model"], quantization=YODA_RECIPE["quantization"])
    model = load_adapter(base, str(yoda_adapter()))
    mistakes = []
    for split, limit in (("test", None), ("train", limit_train)):
        with open(yoda_pairs.HERE / f"yoda_{split}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f][:limit]
        answers = generate(
            model,
            tokenizer,
            [r["messages"][:-1] for r in rows],
            max_new_tokens=48,
            batch_size=batch_size,
        )
        for row, answer in zip(rows, answers, strict=True):
            if not exact_match(answer, row["yoda"]):
                mistakes.append({"id": row["id"], "split": split, "answer": answer})
    return mistakes


def write_mistakes(path: Path = yoda_pairs.MISTAKES_FILE, **kwargs) -> Path:
    """Sample the adapter's mistakes and store them (one JSON object a line)."""
    rows = sample_mistakes(**kwargs)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    print(write_mistakes())
