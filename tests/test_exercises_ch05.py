"""Answers to chapter 05's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
Exercise 05.2 runs one optimizer step of the tiny model per answer, a few seconds each.
"""

from __future__ import annotations

import pytest

import helpers
from helpers import exercises
from helpers.exercises import ch05


def _config(**settings):
    def answer_05_2(output_dir, **common):
        from trl import SFTConfig

        return SFTConfig(output_dir=output_dir, **common, **settings)

    return answer_05_2


def _raises(output_dir, **common):
    raise TypeError("SFTConfig.__init__() got an unexpected keyword argument 'batch_size'")


RIGHT = {
    "05.1": ["checkpointing", " Checkpointing ", "CHECKPOINTING"],
    "05.2": [
        ch05.reference_config,
        lambda output_dir, **common: helpers.sft_config(
            output_dir,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=4,
            gradient_checkpointing=True,
        ),
    ],
}

WRONG = {
    "05.1": [
        ("sgd", "optimizer states are a few tens of MB"),
        ("4bit", "4-bit shrinks the frozen weights"),
        ("half-batch", "halving the batch"),
        ("bf16", "answer with one of"),
        (3, "answer with one of"),
    ],
    "05.2": [
        (
            _config(
                per_device_train_batch_size=2,
                gradient_accumulation_steps=4,
                activation_checkpointing=False,
            ),
            "checkpointing off",
        ),
        (_config(per_device_train_batch_size=8, activation_checkpointing=True), "of [8] sequences"),
        (
            _config(
                per_device_train_batch_size=2,
                gradient_accumulation_steps=2,
                activation_checkpointing=True,
            ),
            "summed 2 micro-batch(es)",
        ),
        (
            _config(per_device_train_batch_size=2, gradient_accumulation_steps=4),
            "only because trl's default turns it on",
        ),
        (lambda output_dir, **common: {"per_device_train_batch_size": 2}, "return an SFTConfig"),
        (_raises, "your answer raised TypeError"),
        (ch05.COMMON, "asks for a function"),
    ],
}


def test_05_1_solution_is_computed():
    savings = ch05.knob_savings()
    assert exercises.solution("05.1") == max(savings, key=savings.get) == "checkpointing"
    assert all(v > 0 for v in savings.values())


def test_05_2_check_sees_what_the_trainer_did():
    """The record comes from the run: micro-batches from a hook, checkpointing from the model."""
    right = ch05.run_one_step(ch05.reference_config("unused", **ch05.COMMON))
    assert right == ch05.StepRecord(
        micro_batches=(2, 2, 2, 2), checkpointing=True, optimizer_steps=1
    )
    config = _config(per_device_train_batch_size=3, gradient_accumulation_steps=2)(
        "x", **ch05.COMMON
    )
    plain = ch05.run_one_step(config)
    assert plain.micro_batches == (3, 3) and plain.optimizer_steps == 1


def test_05_2_unanswered_function_is_not_answered_yet():
    def answer_05_2(output_dir, **common):
        """An SFTConfig."""
        ...

    correct, line = exercises.verdict("05.2", answer_05_2)
    assert not correct
    assert line.startswith("Exercise 05.2: not answered yet: write the body")


# --- 05.3: the model states' bytes ------------------------------------------------------------
RIGHT["05.3"] = [
    lambda total, trainable, weight_bytes: total * weight_bytes + 12 * trainable,
    lambda total, trainable, weight_bytes: int(total * weight_bytes + (4 + 4 + 4) * trainable),
]
WRONG["05.3"] = [
    (lambda total, trainable, wb: total * wb, "the weights alone"),
    (lambda total, trainable, wb: total * wb + 4 * trainable, "two fp32 moments"),
    (lambda total, trainable, wb: total * (wb + 12), "only the trainable parameters"),
    (lambda total, trainable, wb: total * wb + 3 * wb * trainable, "stay fp32"),
    (lambda total, trainable, wb: "many", "not a string"),
]


def test_05_3_agrees_with_the_memory_calculator_for_full_fine_tuning():
    """The calculator's weights and AdamW states are the exercise's; its gradient figure also
    holds the backward pass's transient buffers, so it is not compared."""
    from helpers.memory.estimate import estimate_training_memory
    from helpers.numbers import SMOLLM2_135M_CONFIG, llama_parameters

    n = llama_parameters(SMOLLM2_135M_CONFIG)
    estimate = estimate_training_memory(SMOLLM2_135M_CONFIG, batch_size=1, seq_len=8)
    assert estimate.trainable_parameters == n
    assert estimate.weights == pytest.approx(n * 4, rel=1e-6)
    assert estimate.optimizer_states == ch05.ADAM_STATE_BYTES * n
    assert ch05.model_state_bytes(n, n, 4) == n * 4 + (ch05.GRADIENT_BYTES + 8) * n
