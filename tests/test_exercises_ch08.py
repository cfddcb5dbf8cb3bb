"""Answers to chapter 08's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import numpy as np

from helpers.exercises import ch08
from helpers.exercises.ch08 import greedy_loop, toy_next_logits


def _numpy_loop(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    ids = np.array(prompt_ids)
    new = []
    while len(new) < max_new_tokens:
        token = int(np.argmax(next_logits(ids.tolist())))
        new.append(token)
        if token == eos_token_id:
            break
        ids = np.append(ids, token)
    return np.array(new)


def _with_prompt(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    return list(prompt_ids) + greedy_loop(next_logits, prompt_ids, eos_token_id, max_new_tokens)


def _never_stops(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    return greedy_loop(next_logits, prompt_ids, -1, max_new_tokens)


def _drops_eos(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    out = greedy_loop(next_logits, prompt_ids, eos_token_id, max_new_tokens)
    return out[:-1] if out and out[-1] == eos_token_id else out


def _prompt_only(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    """Always scores the prompt: forgets to append the tokens it generates."""
    token = int(np.argmax(next_logits(list(prompt_ids))))
    return [token] * (1 if token == eos_token_id else max_new_tokens)


def _argmin(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    ids, new = list(prompt_ids), []
    for _ in range(max_new_tokens):
        token = int(np.argmin(next_logits(ids)))
        new.append(token)
        ids.append(token)
    return new


def _one_too_many(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    return greedy_loop(next_logits, prompt_ids, -1, max_new_tokens + 1)[: max_new_tokens + 1]


RIGHT = {
    "08.1": [greedy_loop, _numpy_loop],
    "08.2": [8.5, 17 / 2, np.float64(8.5)],
}

WRONG = {
    "08.1": [
        (_with_prompt, "only the new tokens"),
        (_never_stops, "stop right after"),
        (_drops_eos, "keep the end-of-sequence token"),
        (_prompt_only, "append each new token"),
        (_argmin, "argmax"),
        (_one_too_many, "generate at most"),
        (7, "asks for a function"),
    ],
    "08.2": [
        (8, "also stores its scale"),
        (9, "fp16 (16 bits), not fp32"),
        (34, "bytes per block"),
        (34 / 32, "bytes per weight"),
        (4.5, "add up the bits"),
    ],
}


def test_the_toy_model_is_deterministic_and_depends_on_the_whole_sequence():
    assert toy_next_logits([1, 2, 3]) == toy_next_logits([1, 2, 3])
    assert toy_next_logits([1, 2, 3]) != toy_next_logits([2, 2, 3])


# --- 08.3: one Q8_0 block ---------------------------------------------------------------------
def q8_by_hand(block):
    scale = np.abs(block).max() / 127
    if scale == 0:
        return np.float16(0), np.zeros(len(block), dtype=np.int8)
    return np.float16(scale), np.round(block / scale).astype(np.int8)


def q8_truncated(block):
    scale = np.abs(block).max() / 127
    if scale == 0:
        return 0.0, np.zeros(len(block), dtype=np.int8)
    return scale, (block / scale).astype(np.int8)


def q8_unsigned(block):
    scale = np.abs(block).max() / 255
    if scale == 0:
        return 0.0, np.zeros(len(block), dtype=np.int8)
    return scale, np.round(block / scale).astype(np.int16)


def q8_zero_block_nan(block):
    scale = np.abs(block).max() / 127
    with np.errstate(invalid="ignore", divide="ignore"):
        codes = np.nan_to_num(np.round(block / scale), nan=1).astype(np.int8)
    return scale, codes


RIGHT["08.3"] = [q8_by_hand, ch08.quantize_q8_0]
WRONG["08.3"] = [
    (q8_truncated, "truncate towards zero"),
    (q8_unsigned, "maps to 127, not 255"),
    (q8_zero_block_nan, "do not divide by zero"),
    (lambda block: np.round(block * 100), "a pair (scale, codes)"),
    (lambda block: (1.0, [1, 2]), "32 codes"),
]


def test_the_q8_0_reference_writes_the_bytes_gguf_writes():
    from gguf.quants import GGMLQuantizationType, quantize

    for block in ch08._q8_blocks():
        scale, codes = ch08.quantize_q8_0(block)
        ours = np.float16(scale).tobytes() + codes.astype(np.int8).tobytes()
        theirs = quantize(block.reshape(1, -1), GGMLQuantizationType.Q8_0).tobytes()
        assert ours == theirs
