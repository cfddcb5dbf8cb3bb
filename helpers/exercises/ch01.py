"""Exercises of chapter 01, hardware and numbers.

01.1 and 01.3 ask for code: the check runs the learner's function on values and model
configs the chapter never shows, and compares with torch (01.1) or with a count made
from the config (01.3).
"""

from __future__ import annotations

import math

from . import as_number, call_answer, near_value, number, register

SURVIVAL_CASES = (
    ("fp16", 0.25),
    ("fp16", 0.2),
    ("fp16", -3.5),
    ("fp16", 1 / 3),
    ("fp16", 2048.0),
    ("fp16", 4097.0),
    ("fp16", 65504.0),
    ("fp16", 65520.0),
    ("fp16", 1e6),
    ("fp16", 2.0**-24),
    ("fp16", 2.0**-26),
    ("fp16", 1e-9),
    ("fp16", 0.0),
    ("bf16", 0.25),
    ("bf16", 0.2),
    ("bf16", 256.0),
    ("bf16", 257.0),
    ("bf16", 2.0**100),
    ("bf16", 1e6),
    ("bf16", 2.0**-130),
    ("bf16", 1e-9),
    ("bf16", -1.0078125),
)
"""Exercise 01.1: (format, value) pairs the chapter does not show; torch decides each."""

MODEL_CONFIGS = {
    "SmolLM2-360M": {
        "vocab_size": 49152,
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "SmolLM2-1.7B": {
        "vocab_size": 49152,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "TinyLlama-1.1B": {
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "tie_word_embeddings": False,
    },
}
"""Exercise 01.3: shapes of Llama-style models the chapter does not load (from their configs)."""

MEMORY_FORMATS = ("fp32", "bf16", "fp16", "int8")


def _dtype(name: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _survives(value: float, dtype) -> bool:
    """The reference for 01.1: store in `dtype`, read back, compare."""
    from .. import numbers

    return numbers.round_trip(value, dtype) == value


def _survival_mistakes(function) -> list[tuple[str, float]]:
    """The cases a learner's 01.1 function gets wrong, as (format, value)."""
    wrong = []
    for name, value in SURVIVAL_CASES:
        dtype = _dtype(name)
        if bool(call_answer(function, value, dtype)) != _survives(value, dtype):
            wrong.append((name, value))
    return wrong


def _compare_survival(answer, expected) -> bool:
    return not _survival_mistakes(answer)


def _survival_hint(answer, expected):
    wrong = _survival_mistakes(answer)
    if not wrong:
        return None
    if all(name == "bf16" for name, _ in wrong):
        return "right for fp16 but not for bf16: does your function use the dtype it is given?"
    fp16 = {value for name, value in wrong if name == "fp16"}
    if any(abs(v) > 65504 for v in fp16):
        return "a value above fp16's largest finite number comes back as inf, not unchanged"
    if any(0 < abs(v) < 2.0**-24 for v in fp16):
        return "a value below half of fp16's smallest subnormal (2**-24) comes back as 0"
    if any(v in (4097.0, 257.0) for _, v in wrong):
        return "large odd integers are rounded too: try 4097 in fp16 and 257 in bf16"
    return (
        "store the value with torch.tensor(value, dtype=torch.float64).to(dtype), "
        "read it back with .item() and compare with the value"
    )


def _parameters(config: dict, *, tied_ignored=False, full_kv=False, norms=True) -> int:
    """A Llama count from a config; the flags produce the usual wrong counts for the hints."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config["head_dim"]
    kv_heads = config["num_attention_heads"] if full_kv else config["num_key_value_heads"]
    embedding = config["vocab_size"] * hidden
    attention = 2 * hidden * config["num_attention_heads"] * head_dim
    attention += 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * config["intermediate_size"]
    norm = hidden if norms else 0
    head = 0 if (config["tie_word_embeddings"] or tied_ignored) else embedding
    return embedding + layers * (attention + mlp + 2 * norm) + norm + head


def _weight_bytes(config: dict, dtype_name: str, **mistakes) -> int:
    from .. import numbers

    return math.ceil(_parameters(config, **mistakes) * numbers.bytes_per_parameter(dtype_name))


def _memory_cases():
    return [(name, fmt) for name in MODEL_CONFIGS for fmt in MEMORY_FORMATS]


def _memory_answers(function) -> dict:
    """The learner's 01.3 function on every (model, format), each given a fresh copy."""
    return {
        (name, fmt): as_number(call_answer(function, dict(MODEL_CONFIGS[name]), fmt))
        for name, fmt in _memory_cases()
    }


def _matches(answers: dict, **mistakes) -> bool:
    return all(
        math.isclose(value, _weight_bytes(MODEL_CONFIGS[name], fmt, **mistakes), rel_tol=1e-9)
        for (name, fmt), value in answers.items()
    )


def _compare_memory(answer, expected) -> bool:
    return _matches(_memory_answers(answer))


def _memory_hint(answer, expected):
    answers = _memory_answers(answer)
    if _matches(answers, tied_ignored=True):
        return (
            "right for tied models, not for TinyLlama: with tie_word_embeddings=False the "
            "output layer is a second vocab_size x hidden_size matrix"
        )
    if _matches(answers, full_kv=True):
        return "k_proj and v_proj have num_key_value_heads heads, not num_attention_heads"
    if _matches(answers, norms=False):
        return "the RMSNorm weights count too: two per layer and a final one, hidden_size each"
    fp32 = {(name, fmt): 4 * _weight_bytes(MODEL_CONFIGS[name], "int8") for name, fmt in answers}
    if all(math.isclose(v, fp32[key], rel_tol=1e-9) for key, v in answers.items()):
        return "every format gets 4 bytes per parameter here: use the bytes of `dtype_name`"
    counts = {key: _parameters(MODEL_CONFIGS[key[0]]) for key in answers}
    if all(math.isclose(v, counts[key], rel_tol=1e-9) for key, v in answers.items()):
        return "that is the number of parameters: multiply by the bytes per parameter"
    if all(
        math.isclose(v, 8 * _weight_bytes(MODEL_CONFIGS[n], f)) for (n, f), v in answers.items()
    ):
        return "give bytes, not bits"
    return None


def _fp16_max() -> float:
    import torch

    return float(torch.finfo(torch.float16).max)


register(
    "01.1",
    "Write answer_01_1(value, dtype): True when `value` comes back unchanged after being "
    "stored in `dtype` (torch.float16 or torch.bfloat16).",
    lambda: _survives,
    _compare_survival,
    hints=[_survival_hint],
    fallback_hint="compare the value with what the format gives back",
)

register(
    "01.2",
    "What is the largest finite number fp16 can hold?",
    _fp16_max,
    number(rel_tol=0.0, abs_tol=0.0),
    hints=[
        near_value(math.inf, "inf is not finite: which finite number comes just before it?"),
        near_value(3.4028e38, "that is fp32's maximum: fp16 has 5 exponent bits", rel_tol=1e-3),
        near_value(3.3895e38, "that is bf16's maximum: fp16 has 5 exponent bits", rel_tol=1e-3),
        near_value(65535.0, "65535 needs 16 significant bits and fp16 has 11: it is a bit less"),
        near_value(65536.0, "65536 = 2**16 is one exponent too far for fp16: it is a bit less"),
        near_value(32767.0, "that is int16's maximum: fp16 is a floating-point format"),
    ],
    fallback_hint="look at torch.finfo(torch.float16), or the table in this chapter",
)

register(
    "01.3",
    "Write answer_01_3(config, dtype_name): the bytes a Llama-style model's weights take in "
    "'fp32', 'bf16', 'fp16' or 'int8', counted from its config.",
    lambda: _weight_bytes,
    _compare_memory,
    hints=[_memory_hint],
    fallback_hint=(
        "count the embedding, every layer (attention, MLP, two norms), the final norm and an "
        "untied LM head from the config, then multiply by the bytes per parameter"
    ),
)
