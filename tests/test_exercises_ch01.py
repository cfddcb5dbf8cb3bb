"""Answers to chapter 01's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
01.1 and 01.3 ask for functions: the answers here are functions a learner might write.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import exercises, numbers
from helpers.exercises import ch01


# --- 01.1: does a value survive a trip through fp16 / bf16? ----------------------------------
def survives(value, dtype):
    return torch.tensor(value, dtype=torch.float64).to(dtype).item() == value


def survives_via_fp32(value, dtype):
    return float(torch.tensor([value]).to(dtype).float()[0]) == value


def survives_as_tensor(value, dtype):
    stored = torch.tensor(value, dtype=torch.float64).to(dtype).double()
    return stored == value  # a 0-d bool tensor


def survives_with_numpy_fp16_only(value, dtype):
    with np.errstate(over="ignore"):
        return float(np.float16(value)) == value  # ignores dtype: wrong for bf16


def survives_without_overflow_check(value, dtype):
    stored = torch.tensor(value, dtype=torch.float64).to(dtype).item()
    return stored == value or abs(value) > 65504


def survives_without_underflow_check(value, dtype):
    stored = torch.tensor(value, dtype=torch.float64).to(dtype).item()
    return stored == value or (0 < abs(value) < 2**-24 and dtype == torch.float16)


def survives_if_close(value, dtype):
    stored = torch.tensor(value, dtype=torch.float64).to(dtype).item()
    return abs(stored - value) <= 1e-3 * abs(value)


def always(value, dtype):
    return True


def unanswered(value, dtype):
    """The student copy: the body is still ..."""
    ...


def crashing(value, dtype):
    return value.to(dtype)  # a float has no .to


# --- 01.3: the bytes a model's weights take --------------------------------------------------
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


def weight_bytes(config, dtype_name):
    hidden, head_dim = config["hidden_size"], config["head_dim"]
    q_o = 2 * hidden * config["num_attention_heads"] * head_dim
    k_v = 2 * hidden * config["num_key_value_heads"] * head_dim
    layer = q_o + k_v + 3 * hidden * config["intermediate_size"] + 2 * hidden
    embedding = config["vocab_size"] * hidden
    head = 0 if config["tie_word_embeddings"] else embedding
    params = embedding + config["num_hidden_layers"] * layer + hidden + head
    return params * BYTES[dtype_name]


def weight_bytes_with_helpers(config, dtype_name):
    return numbers.model_memory(numbers.llama_parameters(config), dtype_name)


def weight_bytes_as_float_tensor(config, dtype_name):
    return torch.tensor(float(weight_bytes(config, dtype_name)), dtype=torch.float64)


def weight_bytes_always_tied(config, dtype_name):
    return weight_bytes({**config, "tie_word_embeddings": True}, dtype_name)


def weight_bytes_no_gqa(config, dtype_name):
    return weight_bytes(
        {**config, "num_key_value_heads": config["num_attention_heads"]}, dtype_name
    )


def weight_bytes_no_norms(config, dtype_name):
    hidden = config["hidden_size"]
    norms = (2 * config["num_hidden_layers"] + 1) * hidden
    return weight_bytes(config, dtype_name) - norms * BYTES[dtype_name]


def weight_bytes_fp32_always(config, dtype_name):
    return weight_bytes(config, "fp32")


def parameter_count(config, dtype_name):
    return weight_bytes(config, "int8")


def weight_bits(config, dtype_name):
    return 8 * weight_bytes(config, dtype_name)


def weight_bytes_in_mb(config, dtype_name):
    return weight_bytes(config, dtype_name) / 1e6


def weight_bytes_reads_a_missing_key(config, dtype_name):
    return config["n_layers"]


def unanswered_memory(config, dtype_name):
    """The student copy."""
    ...


RIGHT = {
    "01.1": [survives, survives_via_fp32, survives_as_tensor],
    "01.2": [65504, 65504.0, torch.finfo(torch.float16).max, np.float16(65504)],
    "01.3": [weight_bytes, weight_bytes_with_helpers, weight_bytes_as_float_tensor],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "01.1": [
        (survives_with_numpy_fp16_only, "use the dtype it is given"),
        (survives_without_overflow_check, "inf"),
        (survives_without_underflow_check, "comes back as 0"),
        (survives_if_close, "large odd integers"),
        (always, "inf"),
        (crashing, "raised AttributeError"),
        (0.5, "asks for a function"),
    ],
    "01.2": [
        (float("inf"), "inf is not finite"),
        (65535, "16 significant bits"),
        (65536, "one exponent too far"),
        (3.4028234663852886e38, "fp32's maximum"),
        (3.4e38, "fp32's maximum"),
        (3.39e38, "bf16's maximum"),
        (60000, "torch.finfo"),
        ([65504], "single number"),
    ],
    "01.3": [
        (weight_bytes_always_tied, "tie_word_embeddings=False"),
        (weight_bytes_no_gqa, "num_key_value_heads"),
        (weight_bytes_no_norms, "RMSNorm"),
        (weight_bytes_fp32_always, "4 bytes per parameter"),
        (parameter_count, "number of parameters"),
        (weight_bits, "not bits"),
        (weight_bytes_in_mb, "count the embedding"),
        (weight_bytes_reads_a_missing_key, "raised KeyError"),
        (269_030_016, "asks for a function"),
    ],
}


def test_an_unanswered_function_is_not_answered_yet():
    for exercise_id, function in [("01.1", unanswered), ("01.3", unanswered_memory)]:
        correct, line = exercises.verdict(exercise_id, function)
        assert not correct
        assert line.startswith(f"Exercise {exercise_id}: not answered yet: write the body")


def test_the_survival_cases_hold_both_answers_in_both_formats():
    results = {(name, ch01._survives(v, ch01._dtype(name))) for name, v in ch01.SURVIVAL_CASES}
    assert results == {("fp16", True), ("fp16", False), ("bf16", True), ("bf16", False)}
    assert not ch01._survives(65520.0, torch.float16)  # rounds up to inf
    assert ch01._survives(2.0**-24, torch.float16)  # the smallest subnormal itself
    assert not ch01._survives(257.0, torch.bfloat16)


def test_the_memory_reference_agrees_with_the_chapter_count():
    assert ch01._weight_bytes(numbers.SMOLLM2_135M_CONFIG, "bf16") == 269_030_016
    for config in ch01.MODEL_CONFIGS.values():
        assert ch01._parameters(config) == numbers.llama_parameters(config)
    # TinyLlama's published size is 1.1B parameters (untied head)
    assert round(ch01._parameters(ch01.MODEL_CONFIGS["TinyLlama-1.1B"]) / 1e9, 1) == 1.1
    assert round(ch01._parameters(ch01.MODEL_CONFIGS["SmolLM2-360M"]) / 1e6) == 362


def test_the_check_does_not_let_a_function_change_the_shared_configs():
    def mutating(config, dtype_name):
        config["tie_word_embeddings"] = False
        return weight_bytes(config, dtype_name)

    exercises.verdict("01.3", mutating)
    assert ch01.MODEL_CONFIGS["SmolLM2-360M"]["tie_word_embeddings"] is True
    assert exercises.verdict("01.3", weight_bytes)[0]


def test_the_fp16_maximum_is_computed():
    assert exercises.solution("01.2") == 65504.0
