"""Preference pairs for the Yoda task: a right answer and a plausible wrong one.

What a pair is
    Each row holds a prompt (the system message and the English sentence), a
    *chosen* answer (the correct Yoda sentence of ``yoda.py``) and a *rejected*
    one, in trl's conversational preference format (``prompt``, ``chosen``,
    ``rejected``, each a list of chat messages). ``kind`` says where the rejected
    answer comes from:

    * ``english``:   the untransformed English sentence (an easy contrast: the
                     model only has to learn "do not copy the input").
    * ``near_miss``: the right fronting with the subject and the auxiliary
                     swapped at the end ("Go alone, must you." instead of
                     "Go alone, you must."), the mistake a half-trained model makes.
    * ``adapter``:   a wrong answer that chapter 00's SFT adapter really gave
                     (greedy decoding) for that sentence: the mistakes DPO should
                     push down are the ones the model makes.

Split
    Train pairs come from the Yoda train split, test pairs from the Yoda test
    split (the same sentences chapter 00 scores), so no sentence is in both.

Provenance and licence
    ``english`` and ``near_miss`` answers are derived from the rows of
    ``yoda_train.jsonl``/``yoda_test.jsonl`` by the functions below. ``adapter``
    answers are the outputs of the chapter-00 adapter (SmolLM2-135M-Instruct,
    Apache-2.0, with the course's LoRA adapter) that were not exact matches; they
    are stored in ``yoda_adapter_mistakes.jsonl`` so that loading the pairs needs
    no model. All of it is part of the course, under Apache-2.0.

Regenerate the mistakes file from a clone with ``python -m tools.yoda_mistakes`` (it
loads the adapter and generates; a few minutes on a CPU). The pairs themselves are built
from the files at load time, deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
MISTAKES_FILE = HERE / "yoda_adapter_mistakes.jsonl"
KINDS = ("english", "near_miss", "adapter")


def near_miss(yoda: str) -> str:
    """The Yoda sentence with the final "subject auxiliary[ not]" turned around.

    "Go alone, you must not." -> "Go alone, must not you."; for a question
    ("Sell the horse, did the farmer?") the auxiliary goes last instead:
    "Sell the horse, the farmer did?". Everything before the last comma stays.
    """
    head, sep, tail = yoda.rpartition(", ")
    if not sep:
        raise ValueError(f"{yoda!r} has no ', ' before its subject: not a Yoda sentence.")
    end = tail[-1]
    words = tail[:-1].split()
    if words[0] in AUXILIARIES:  # a question: "did the farmer" -> "the farmer did"
        n_aux = 2 if len(words) > 2 and words[1] == "not" else 1
        turned = words[n_aux:] + words[:n_aux]
    else:  # "the old man must not" -> "must not the old man"
        n_aux = 2 if words[-1] == "not" else 1
        turned = words[-n_aux:] + words[:-n_aux]
    return f"{head}{sep}{' '.join(turned)}{end}"


AUXILIARIES = frozenset(
    "must can cannot will would should could may might shall "
    "is are was were am be has have had do does did".split()
)


def read_mistakes(path: Path = MISTAKES_FILE) -> dict[str, str]:
    """The adapter's wrong answers, by Yoda example id."""
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {r["id"]: r["answer"] for r in rows}


def _messages(answer: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": answer}]


def build_pairs(yoda_rows: list[dict], mistakes: dict[str, str]) -> list[dict]:
    """Up to three pairs per Yoda row (one per kind), in a fixed order."""
    pairs = []
    for row in yoda_rows:
        chosen = row["yoda"]
        rejected = {
            "english": row["english"],
            "near_miss": near_miss(chosen),
            "adapter": mistakes.get(row["id"]),
        }
        for kind in KINDS:
            answer = rejected[kind]
            if answer is None or answer.strip() == chosen:
                continue
            pairs.append(
                {
                    "id": f"{row['id']}-{kind}",
                    "shape": row["shape"],
                    "kind": kind,
                    "prompt": row["messages"][:-1],
                    "chosen": _messages(chosen),
                    "rejected": _messages(answer),
                }
            )
    return pairs


def pair_rows(split: str) -> list[dict]:
    """The preference pairs of one split ('train' or 'test'), built from the bundled files."""
    with open(HERE / f"yoda_{split}.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return build_pairs(rows, read_mistakes())
