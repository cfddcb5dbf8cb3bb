"""Answers to chapter 03's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
03.3 asks for a function returning a LoraConfig; its check builds the tiny model with peft.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from peft import LoraConfig

import helpers
from helpers import exercises, lora
from helpers.exercises import ch03


# --- 03.3: a LoraConfig for the attention projections ----------------------------------------
def attention_only(r):
    return LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
    )


def attention_with_the_helper(r):
    return helpers.lora_config(r=r, target_modules=list(lora.ATTENTION))


def attention_by_regex(r):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=r".*\.self_attn\.(q|k|v|o)_proj")


def attention_alpha_16(r):
    return LoraConfig(r=r, lora_alpha=16, target_modules=list(lora.ATTENTION))


def attention_imported_helper(r):
    from helpers.training import lora_config

    return lora_config(r=r, target_modules=list(lora.ATTENTION))


def all_linear(r):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear")


def q_and_v(r):
    return LoraConfig(r=r, target_modules=["q_proj", "v_proj"])


def attention_and_gate(r):
    return LoraConfig(r=r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])


def fixed_rank(r):
    return LoraConfig(r=8, lora_alpha=16, target_modules=list(lora.ATTENTION))


def a_dict(r):
    return {"r": r, "target_modules": list(lora.ATTENTION)}


def unanswered(r):
    """The student copy."""
    ...


def crashing(r):
    return LoraConfig(r=r, target_modules=list(lora.ATTENTION), lora_dropout=2.0, nonsense=1)


RIGHT = {
    "03.1": [2, 2.0, 16 / math.sqrt(64), torch.tensor(2.0), np.float64(2.0)],
    "03.2": [288, 288.0, 576 * 576 / (576 + 576), np.float64(288)],
    "03.3": [attention_only, attention_by_regex],
}

# Wrong answers, each with a piece of the hint it must get.
WRONG = {
    "03.1": [
        (0.25, "alpha / r, without rsLoRA"),
        (0.125, "alpha multiplies it too"),
        (16, "divided by something"),
        (0.5, "upside down"),
        (16 / 512, "sqrt(r) once"),
        (4, "square root of the rank"),
        ("2", "not a string"),
    ],
    "03.2": [
        (576, "twice the matrix"),
        (24, "square root"),
        (8, "break-even"),
        (100, "solve r * (d_in + d_out)"),
        ([288], "single number"),
    ],
    "03.3": [
        (all_linear, "gate_proj, up_proj and down_proj"),
        (q_and_v, "k_proj, o_proj not adapted"),
        (attention_and_gate, "gate_proj adapted too"),
        (fixed_rank, "use the rank the function is given"),
        (attention_alpha_16, "alpha = 2 * r"),
        (attention_with_the_helper, "write it yourself"),
        (attention_imported_helper, "write it yourself"),
        (helpers.lora_config, "write it yourself"),
        (a_dict, "return a peft LoraConfig"),
        (crashing, "raised TypeError"),
        (921_600, "asks for a function"),
    ],
}


def test_an_unanswered_function_is_not_answered_yet():
    correct, line = exercises.verdict("03.3", unanswered)
    assert not correct
    assert line.startswith("Exercise 03.3: not answered yet: write the body")


def test_the_rslora_scaling_is_what_peft_uses():
    from peft import get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(128, 128, bias=False)

    config = LoraConfig(
        r=ch03.RSLORA_R, lora_alpha=ch03.RSLORA_ALPHA, use_rslora=True, target_modules=["proj"]
    )
    layer = get_peft_model(Tiny(), config).base_model.model.proj
    assert layer.scaling["default"] == pytest.approx(exercises.solution("03.1"))
    assert exercises.solution("03.1") == pytest.approx(2.0)


def test_the_check_counts_against_the_formula_on_the_tiny_model():
    trainable, adapted, rank = ch03._applied(attention_only(4))
    config = ch03._fresh_tiny_model_config()
    assert adapted == set(lora.ATTENTION) and rank == 4
    assert trainable == lora.lora_parameters(config, 4, lora.ATTENTION)
    assert trainable != lora.lora_parameters(config, 4)  # all-linear would differ


def test_solutions_are_computed_from_the_shapes():
    assert exercises.solution("03.2") == 288.0


# --- 03.4: the merged weight -----------------------------------------------------------------
def merge_by_einsum(weight, lora_A, lora_B, alpha, r):
    return weight + torch.einsum("or,ri->oi", lora_B, lora_A) * alpha / r


def merge_unscaled(weight, lora_A, lora_B, alpha, r):
    return weight + lora_B @ lora_A


def merge_rslora(weight, lora_A, lora_B, alpha, r):
    return weight + alpha / math.sqrt(r) * (lora_B @ lora_A)


def merge_in_place(weight, lora_A, lora_B, alpha, r):
    weight += (alpha / r) * (lora_B @ lora_A)
    return weight


def update_only(weight, lora_A, lora_B, alpha, r):
    return (alpha / r) * (lora_B @ lora_A)


def merge_transposed(weight, lora_A, lora_B, alpha, r):
    return weight.T + (alpha / r) * (lora_A.T @ lora_B.T)


RIGHT["03.4"] = [merge_by_einsum, ch03.merged_weight]
WRONG["03.4"] = [
    (merge_unscaled, "multiply B A by alpha / r"),
    (merge_rslora, "rsLoRA's scale"),
    (merge_in_place, "changed its inputs in place"),
    (update_only, "add the update to the base weight"),
    (merge_transposed, "W's shape"),
    (lambda w, a, b, alpha, r: [[0.0]], "return a torch tensor"),
]


def test_the_merge_reference_is_what_peft_stores():
    from peft import get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(20, 12, bias=False)

    torch.manual_seed(0)
    model = get_peft_model(Tiny(), LoraConfig(r=4, lora_alpha=16, target_modules=["proj"]))
    layer = model.base_model.model.proj
    torch.nn.init.normal_(layer.lora_B["default"].weight)  # peft starts B at zero
    expected = ch03.merged_weight(
        layer.base_layer.weight.detach().clone(),
        layer.lora_A["default"].weight.detach(),
        layer.lora_B["default"].weight.detach(),
        16,
        4,
    )
    merged = model.merge_and_unload().proj.weight.detach()
    assert torch.allclose(merged, expected, atol=1e-6)
