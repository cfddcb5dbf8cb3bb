"""Exercises of chapter 05, SFTTrainer and memory."""

from __future__ import annotations

from . import near_ratio, near_value, number, one_of, register

LORA_RANK = 16
"""Exercise 05.1: LoRA of this rank on every linear layer of SmolLM2."""

LOGITS_BATCH, LOGITS_SEQ = 8, 128
"""Exercise 05.2: the batch whose fp32 logits the learner sizes."""

KNOB_CONFIG = {"batch_size": 8, "seq_len": 512, "lora_rank": 16}
"""Exercise 05.3: the starting point (fp32, SDPA, AdamW, no checkpointing)."""

KNOBS = {
    "checkpointing": {"gradient_checkpointing": True},
    "4bit": {"quantization": "4bit"},
    "half-batch": {"batch_size": 4, "gradient_accumulation_steps": 2},
    "sgd": {"optimizer": "sgd"},
}
"""Exercise 05.3: the four changes to choose from."""


def _lora_parameters() -> int:
    from ..memory.estimate import LINEAR_NAMES, Shape

    return Shape.of("smollm2-135m-instruct").lora_parameters(LORA_RANK, LINEAR_NAMES)


def _adam_state_bytes() -> int:
    return 2 * 4 * _lora_parameters()  # two fp32 running averages per trainable parameter


def _logits_bytes() -> int:
    from ..memory.estimate import Shape

    vocab = Shape.of("smollm2-135m-instruct").vocab_size
    return LOGITS_BATCH * LOGITS_SEQ * vocab * 4


def knob_savings() -> dict[str, int]:
    """Bytes each knob of exercise 05.3 saves on the predicted peak (the estimator)."""
    from ..memory.estimate import estimate_training_memory

    base = estimate_training_memory("smollm2-135m-instruct", **KNOB_CONFIG).total
    return {
        knob: base
        - estimate_training_memory("smollm2-135m-instruct", **{**KNOB_CONFIG, **change}).total
        for knob, change in KNOBS.items()
    }


def _best_knob() -> str:
    savings = knob_savings()
    return max(savings, key=savings.get)


def _lora_count_hint(answer, expected):
    from . import as_number

    value = as_number(answer)
    params = _lora_parameters()
    for factor, hint in (
        (
            1,
            "that is the number of trainable parameters: how many numbers does Adam keep "
            "for each, and how many bytes does each take?",
        ),
        (4, "that is one fp32 number per parameter: Adam keeps two"),
        (2, "that counts two numbers per parameter, but in bytes each fp32 number is 4"),
        (16, "that is weights, gradients and both Adam states: count the optimizer states only"),
        (12, "that adds the gradients: count the optimizer states only"),
    ):
        if abs(value - factor * params) <= 0.01 * factor * params:
            return hint
    return None


register(
    "05.1",
    "How many bytes do AdamW's states take for LoRA r=16 on every linear layer of SmolLM2 "
    "(adapters in fp32)?",
    _adam_state_bytes,
    number(rel_tol=0.01),
    hints=[
        _lora_count_hint,
        near_ratio(0.5, "that is one state per parameter: AdamW keeps two running averages"),
        near_ratio(8.0, "give the answer in bytes, not bits"),
        near_value(
            2 * 4 * 134_515_008,
            "that is for every weight of the model: only the LoRA adapters train",
            rel_tol=0.01,
        ),
    ],
    fallback_hint="count the LoRA parameters, r x (inputs + outputs) for each adapted layer, "
    "then multiply by the states per parameter and the bytes per state",
)


register(
    "05.2",
    f"How many bytes does one fp32 tensor of logits take for a batch of {LOGITS_BATCH} "
    f"sequences of {LOGITS_SEQ} tokens?",
    _logits_bytes,
    number(rel_tol=0.01),
    hints=[
        near_ratio(0.5, "that is 2 bytes per value: the loss is computed on fp32 logits"),
        near_ratio(
            576 / 49152,
            "that is the size of the hidden states: logits have one value per vocabulary entry",
        ),
        near_ratio(1 / LOGITS_BATCH, "that is for one sequence: the batch has 8"),
        near_ratio(
            3.0,
            "that is the three tensors alive at the start of the backward pass: "
            "the question asks for one",
        ),
        near_ratio(8.0, "give the answer in bytes, not bits"),
        near_ratio(1e-6, "give the answer in bytes, not megabytes"),
    ],
    fallback_hint="batch x tokens x vocabulary size (49,152) x bytes of an fp32 number",
)


register(
    "05.3",
    "LoRA r=16, batch 8 x 512 tokens, fp32, AdamW: which single change lowers the predicted "
    f"peak the most? One of {sorted(KNOBS)}.",
    _best_knob,
    one_of(sorted(KNOBS)),
    hints=[
        lambda answer, expected: {
            "sgd": "with LoRA the optimizer states are a few tens of MB: look at the biggest "
            "part of the bar",
            "4bit": "4-bit shrinks the frozen weights, about 400 MB here; the biggest part "
            "of the bar is something else",
            "half-batch": "halving the batch halves the activations; one option removes "
            "more than half of them",
        }.get(str(answer).strip().lower()),
    ],
    fallback_hint="compare the savings with memory.estimate_training_memory",
)
