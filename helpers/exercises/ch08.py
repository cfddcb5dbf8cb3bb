"""Exercises of chapter 08, deployment."""

from __future__ import annotations

import hashlib

from . import AnswerMissing, call_answer, near_value, number, refuse_course_solution, register

# ---------------------------------------------------------------- 08.1
VOCAB = 50
"""Exercise 08.1: the size of the made-up vocabulary the check's model scores."""


def toy_next_logits(ids: list[int]) -> list[float]:
    """A made-up "model": scores for the next token, a deterministic function of all ``ids``.

    It stands in for one onnxruntime call (``logits[0, -1]``); unlike a real model it is
    instant and the same on every machine, so the check can run many prompts.
    """
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).digest()
    return [digest[i % len(digest)] * 1.0 + 0.001 * i for i in range(VOCAB)]


def greedy_loop(next_logits, prompt_ids, eos_token_id, max_new_tokens):
    """The reference answer: greedy decoding, stopping after the end-of-sequence token."""
    ids, new = list(prompt_ids), []
    for _ in range(max_new_tokens):
        scores = list(next_logits(ids))
        token = max(range(len(scores)), key=scores.__getitem__)
        new.append(token)
        if token == eos_token_id:
            break
        ids.append(token)
    return new


def _reference_eos(prompt, steps):
    """An end-of-sequence id that the reference reaches after `steps` tokens (for a stop case)."""
    return greedy_loop(toy_next_logits, prompt, -1, steps)[steps - 1]


PROMPTS = ([3, 14, 15], [9, 2, 6, 5, 3], [27])
CASES = [
    (PROMPTS[0], -1, 12),  # never stops: runs to max_new_tokens
    (PROMPTS[1], _reference_eos(PROMPTS[1], 4), 12),  # stops after 4 tokens, EOS kept
    (PROMPTS[2], _reference_eos(PROMPTS[2], 1), 5),  # stops at once
    (PROMPTS[0], -1, 1),
]


def _tokens(answer, prompt, eos, n):
    got = call_answer(answer, toy_next_logits, list(prompt), eos, n)
    return [int(t) for t in got]


def _same_tokens(answer, expected) -> bool:
    return all(
        _tokens(answer, p, eos, n) == greedy_loop(toy_next_logits, p, eos, n) for p, eos, n in CASES
    )


def _loop_hint(answer, expected):
    for prompt, eos, n in CASES:
        got = _tokens(answer, prompt, eos, n)
        want = greedy_loop(toy_next_logits, prompt, eos, n)
        if got == want:
            continue
        if got[: len(prompt)] == list(prompt):
            return "return only the new tokens, not the prompt"
        if eos != -1 and len(got) > len(want) and got[: len(want)] == want:
            return "stop right after the end-of-sequence token (and keep it in the result)"
        if eos != -1 and got == want[:-1]:
            return "keep the end-of-sequence token in the result: it shows the model stopped"
        if len(got) != len(want):
            return f"{len(got)} tokens for max_new_tokens={n}: generate at most that many"
        if got[:1] == want[:1]:
            return "append each new token to the ids before asking for the next logits"
        return "take the position of the largest logit (the argmax) as the next token"
    return None


register(
    "08.1",
    "Write answer_08_1(next_logits, prompt_ids, eos_token_id, max_new_tokens): greedy "
    "decoding. next_logits(ids) returns the scores of the next token after `ids`; return "
    "the list of new token ids, stopping after eos_token_id (kept) or max_new_tokens.",
    lambda: greedy_loop,
    _same_tokens,
    hints=[_loop_hint],
    fallback_hint="compare with helpers.exercises.ch08.greedy_loop on a short prompt",
)

# ---------------------------------------------------------------- 08.2
BLOCK, SCALE_BITS = 32, 16


register(
    "08.2",
    "GGUF's Q8_0 stores the weights in blocks of 32: 32 signed 8-bit integers and one fp16 "
    "scale per block. How many bits does it spend per weight, on average?",
    lambda: (BLOCK * 8 + SCALE_BITS) / BLOCK,
    number(abs_tol=1e-6),
    hints=[
        near_value(8.0, "the 8-bit integers are not all: each block also stores its scale"),
        near_value((BLOCK * 8 + 32) / BLOCK, "the scale is fp16 (16 bits), not fp32"),
        near_value((BLOCK * 8 + SCALE_BITS) / 8, "that is bytes per block; divide by 32 weights"),
        near_value((BLOCK * 8 + SCALE_BITS) / 8 / BLOCK, "that is bytes per weight: count bits"),
    ],
    fallback_hint="add up the bits of one block (integers and scale), divide by its 32 weights",
)


# ---------------------------------------------------------------- 08.3
Q8_BLOCK = 32
Q8_SEEDS = (81, 82, 83)
"""Exercise 08.3: the seeds of the random blocks the check quantizes (one is all zeros)."""


def quantize_q8_0(block):
    """The reference for 08.3: one GGUF Q8_0 block, as ggml's ``quantize_row_q8_0`` does.

    d = max|x| / 127 (stored as fp16), codes = round(x / d) as int8 (0 where d is 0).
    """
    import numpy as np

    x = np.asarray(block, dtype=np.float32)
    d = float(np.abs(x).max()) / 127.0
    inverse = 1.0 / d if d else 0.0
    codes = np.round(x * inverse).astype(np.int8)
    return np.float16(d), codes


def _q8_blocks() -> list:
    import numpy as np

    blocks = []
    for seed in Q8_SEEDS:
        rng = np.random.default_rng(seed)
        blocks.append((rng.standard_normal(Q8_BLOCK) * 0.02).astype(np.float32))
    blocks.append(np.zeros(Q8_BLOCK, dtype=np.float32))
    return blocks


def _q8_answers(answer):
    import numpy as np

    refuse_course_solution(answer, registered=quantize_q8_0)
    got = []
    for block in _q8_blocks():
        result = call_answer(answer, block.copy())
        if not isinstance(result, tuple) or len(result) != 2:
            raise AnswerMissing("return a pair (scale, codes)")
        scale, codes = result
        got.append((float(scale), np.asarray(codes)))
    return got


def _same_q8(answer, expected) -> bool:
    import numpy as np

    for (scale, codes), block in zip(_q8_answers(answer), _q8_blocks(), strict=True):
        want_scale, want_codes = quantize_q8_0(block)
        if codes.shape != (Q8_BLOCK,) or not np.issubdtype(codes.dtype, np.integer):
            return False
        if not np.isclose(scale, float(want_scale), rtol=1e-3, atol=0):
            return False
        if np.abs(codes.astype(np.int64) - want_codes.astype(np.int64)).max() > 0:
            return False
    return True


def _q8_hint(answer, expected):
    import numpy as np

    for (scale, codes), block in zip(_q8_answers(answer), _q8_blocks(), strict=True):
        want_scale, want_codes = quantize_q8_0(block)
        if codes.shape != (Q8_BLOCK,):
            return f"return one code per weight: {Q8_BLOCK} codes, got shape {codes.shape}"
        if not np.issubdtype(codes.dtype, np.integer):
            return "the codes are integers (np.int8): round, then cast"
        if not block.any():
            if not np.isfinite(scale) or np.any(codes != 0):
                return "a block of zeros has scale 0 and codes 0: do not divide by zero"
            continue
        if np.isclose(scale, float(np.abs(block).max()) / 255, rtol=1e-3):
            return "the codes are signed: max|x| maps to 127, not 255"
        if np.isclose(scale, float(block.max()) / 127, rtol=1e-3) and block.max() < -block.min():
            return "use the largest absolute value, max|x|, not the largest value"
        if (
            np.isclose(scale, float(want_scale), rtol=1e-3)
            and np.abs(codes.astype(int) - np.trunc(block / float(want_scale)).astype(int)).max()
            == 0
        ):
            return "round to the nearest integer; int() and astype() truncate towards zero"
    return None


register(
    "08.3",
    "Write answer_08_3(block): quantize one block of 32 float32 weights to GGUF's Q8_0, "
    "returning (scale, codes): scale = max|x| / 127 and 32 int8 codes round(x / scale).",
    lambda: quantize_q8_0,
    _same_q8,
    hints=[_q8_hint],
    fallback_hint="dequantized, scale * codes should be within scale / 2 of every weight",
)
