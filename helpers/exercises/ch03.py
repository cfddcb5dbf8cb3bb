"""Exercises of chapter 03, LoRA.

03.3 asks for code: a function that returns a ``LoraConfig``. The check builds the
course's tiny 2-layer model (same layer names as SmolLM2, other sizes), applies the
config with peft for ranks the chapter does not use, and compares the trainable-parameter
count and the adapted layers with the formula r * (d_in + d_out) over the attention
projections.
"""

from __future__ import annotations

import math

from . import (
    AnswerMissing,
    call_answer,
    near_value,
    number,
    refuse_course_solution,
    register,
)

RSLORA_R, RSLORA_ALPHA = 64, 16
"""Exercise 03.1: the rank and alpha of a LoraConfig with use_rslora=True."""

CHECK_RANKS = (2, 6)
"""Exercise 03.3: the ranks the check asks the learner's function for."""

CHECK_MODEL = "tiny-random-smollm2"

_tiny_model = None


def _config():
    from ..numbers import SMOLLM2_135M_CONFIG

    return SMOLLM2_135M_CONFIG


def _shapes():
    from ..lora import projection_shapes

    return projection_shapes(_config())


def _q_proj_break_even() -> float:
    """The rank at which A and B of q_proj hold as many numbers as q_proj itself."""
    d_in, d_out = _shapes()["q_proj"]
    return d_in * d_out / (d_in + d_out)


def _rslora_scaling() -> float:
    """rsLoRA's scaling: alpha / sqrt(r) (peft's ``use_rslora=True``)."""
    return RSLORA_ALPHA / math.sqrt(RSLORA_R)


register(
    "03.1",
    f"With LoraConfig(r={RSLORA_R}, lora_alpha={RSLORA_ALPHA}, use_rslora=True), by what "
    "factor does the layer multiply B A x?",
    _rslora_scaling,
    number(rel_tol=1e-6),
    hints=[
        near_value(RSLORA_ALPHA / RSLORA_R, "that is alpha / r, without rsLoRA"),
        near_value(1 / math.sqrt(RSLORA_R), "alpha multiplies it too: alpha / sqrt(r)"),
        near_value(RSLORA_ALPHA, "alpha is divided by something that depends on the rank"),
        near_value(math.sqrt(RSLORA_R) / RSLORA_ALPHA, "that is upside down: alpha / sqrt(r)"),
        near_value(RSLORA_ALPHA / math.sqrt(RSLORA_R) ** 3, "divide by sqrt(r) once"),
    ],
    fallback_hint="rank-stabilized LoRA divides alpha by the square root of the rank",
)

register(
    "03.2",
    "At which rank r do A and B of SmolLM2's q_proj (576 x 576) hold as many numbers as q_proj?",
    _q_proj_break_even,
    number(abs_tol=1e-9),
    hints=[
        near_value(576, "at r=576, A and B hold 2 x 576 x 576 numbers: twice the matrix"),
        near_value(24, "that is the square root of 576; solve r * (576 + 576) = 576 * 576"),
        near_value(8, "that is the rank used in this chapter, far below the break-even point"),
    ],
    fallback_hint="solve r * (d_in + d_out) = d_in * d_out for r",
)


# --- 03.3: a LoraConfig for the attention projections only -----------------------------------


def _attention_config(r: int):
    """The reference for 03.3: peft's LoraConfig on q, k, v and o, rank r, alpha 2r."""
    from peft import LoraConfig

    from ..lora import ATTENTION

    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(ATTENTION), task_type="CAUSAL_LM")


def _fresh_tiny_model():
    """A copy of the course's tiny model (loaded once): peft changes the model it wraps."""
    import copy

    global _tiny_model
    if _tiny_model is None:
        from ..models import load_model

        _tiny_model, _ = load_model(CHECK_MODEL)
    return copy.deepcopy(_tiny_model)


def _applied(config) -> tuple[int, set[str], int]:
    """(trainable parameters, adapted layer names, rank) of `config` on the tiny model."""
    import warnings

    from peft import LoraConfig, get_peft_model

    if not isinstance(config, LoraConfig):
        raise AnswerMissing(f"return a peft LoraConfig, not a {type(config).__name__}")
    model = _fresh_tiny_model()
    with warnings.catch_warnings():  # peft reads a renamed transformers property
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    trainable = peft_model.get_nb_trainable_parameters()[0]
    adapted = {
        name.rsplit(".", 1)[-1]
        for name, module in peft_model.named_modules()
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0
    }
    return trainable, adapted, config.r


def _lora_results(function) -> list[tuple[int, tuple[int, set[str], int], float]]:
    """(asked rank, what the config does on the tiny model, its lora_alpha) per checked rank."""
    from ..training import lora_config

    refuse_course_solution(function, lora_config)
    results = []
    for r in CHECK_RANKS:
        config = call_answer(function, r)
        results.append((r, _applied(config), config.lora_alpha))
    return results


def _expected_count(r: int, targets) -> int:
    from ..lora import lora_parameters

    return lora_parameters(_fresh_tiny_model_config(), r, targets)


def _fresh_tiny_model_config():
    if _tiny_model is None:
        _fresh_tiny_model()
    return _tiny_model.config


def _compare_lora(answer, expected) -> bool:
    from ..lora import ATTENTION

    for r, (trainable, adapted, _), alpha in _lora_results(answer):
        if adapted != set(ATTENTION) or trainable != _expected_count(r, ATTENTION):
            return False
        if alpha != 2 * r:
            return False
    return True


def _lora_hint(answer, expected):
    from ..lora import ATTENTION, MLP

    for r, (trainable, adapted, rank), alpha in _lora_results(answer):
        if rank != r:
            return f"use the rank the function is given: asked for r={r}, the config has r={rank}"
        if adapted >= set(MLP):
            return "the MLP's gate_proj, up_proj and down_proj are adapted too: attention only"
        missing = sorted(set(ATTENTION) - adapted)
        if missing:
            return f"{', '.join(missing)} not adapted: attention has q_proj, k_proj, v_proj, o_proj"
        extra = sorted(adapted - set(ATTENTION))
        if extra:
            return f"{', '.join(extra)} adapted too: only the attention projections"
        if trainable != _expected_count(r, ATTENTION):
            return "the right layers, but more parameters train: leave bias='none'"
        if alpha != 2 * r:
            return (
                f"for r={r} the config has lora_alpha={alpha}: the course's rule is "
                "alpha = 2 * r, so that the update's scale alpha / r stays 2 at every rank"
            )
    return None


register(
    "03.3",
    "Write answer_03_3(r): a peft LoraConfig of rank r and lora_alpha 2r that adapts only the "
    "attention projections (q_proj, k_proj, v_proj, o_proj) of a Llama model, with peft's "
    "LoraConfig itself (not helpers.lora_config).",
    lambda: _attention_config,
    _compare_lora,
    hints=[_lora_hint],
    fallback_hint="LoraConfig(r=r, lora_alpha=2 * r, target_modules=[...], task_type=...)",
)


# --- 03.4: merging an adapter into its base weight by hand -----------------------------------
MERGE_CASES = ((7, 5, 3, 6.0), (12, 20, 4, 16.0), (9, 9, 1, 1.0))
"""Exercise 03.4: (d_out, d_in, r, alpha) of the layers the check merges; none is SmolLM2's."""


def merged_weight(weight, lora_A, lora_B, alpha, r):
    """The reference for 03.4: W + (alpha / r) B A, what ``merge_and_unload`` stores."""
    return weight + (alpha / r) * (lora_B @ lora_A)


def _merge_inputs(case: tuple[int, int, int, float], seed: int):
    import torch

    d_out, d_in, r, alpha = case
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(d_out, d_in, generator=generator)
    lora_A = torch.randn(r, d_in, generator=generator)
    lora_B = torch.randn(d_out, r, generator=generator)
    return weight, lora_A, lora_B, alpha, r


def _merge_results(answer):
    """(the learner's merged weight, the reference, inputs changed?) per case."""
    import torch

    results = []
    for seed, case in enumerate(MERGE_CASES, start=31):
        inputs = _merge_inputs(case, seed)
        copies = [t.clone() if torch.is_tensor(t) else t for t in inputs]
        got = call_answer(answer, *copies)
        if not torch.is_tensor(got):
            raise AnswerMissing(
                f"return a torch tensor (the merged weight), not {type(got).__name__}"
            )
        changed = any(
            torch.is_tensor(c) and not torch.equal(c, t)
            for c, t in zip(copies, inputs, strict=True)
        )
        results.append((got, merged_weight(*inputs), changed, inputs))
    return results


def _same_merge(answer, expected) -> bool:
    import torch

    return all(
        got.shape == want.shape and torch.allclose(got, want, atol=1e-5) and not changed
        for got, want, changed, _ in _merge_results(answer)
    )


def _merge_hint(answer, expected):
    import torch

    for got, want, changed, (weight, lora_A, lora_B, alpha, r) in _merge_results(answer):
        if got.shape != want.shape:
            return f"the merged weight has W's shape {tuple(want.shape)}, got {tuple(got.shape)}"
        if changed:
            return "your function changed its inputs in place: return a new tensor"
        if torch.allclose(got, weight + lora_B @ lora_A, atol=1e-5) and alpha != r:
            return "the update is scaled: multiply B A by alpha / r"
        if torch.allclose(got, weight + alpha / r**0.5 * (lora_B @ lora_A), atol=1e-5):
            return "alpha / sqrt(r) is rsLoRA's scale; this layer uses plain LoRA's alpha / r"
        if torch.allclose(got, (alpha / r) * (lora_B @ lora_A), atol=1e-5):
            return "add the update to the base weight W"
    return None


register(
    "03.4",
    "Write answer_03_4(weight, lora_A, lora_B, alpha, r): the weight a merged LoRA layer "
    "stores (W is d_out x d_in, A is r x d_in, B is d_out x r), as a new tensor.",
    lambda: merged_weight,
    _same_merge,
    hints=[_merge_hint],
    fallback_hint="y = W x + (alpha / r) B A x for every x: which single matrix does that?",
)
