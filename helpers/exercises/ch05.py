"""Exercises of chapter 05, SFTTrainer and memory."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import tempfile
import warnings

from ..data import load_dataset
from ..memory.estimate import estimate_training_memory
from . import AnswerMissing, as_number, call_answer, keywords_set, one_of, register

KNOB_CONFIG = {"batch_size": 8, "seq_len": 512, "lora_rank": 16}
"""Exercise 05.1: the starting point (fp32, SDPA, AdamW, no checkpointing)."""

KNOBS = {
    "checkpointing": {"gradient_checkpointing": True},
    "4bit": {"quantization": "4bit"},
    "half-batch": {"batch_size": 4, "gradient_accumulation_steps": 2},
    "sgd": {"optimizer": "sgd"},
}
"""Exercise 05.1: the four changes to choose from."""

MICRO_BATCH, ACCUMULATION = 2, 4
"""Exercise 05.2: the micro-batch size and the micro-batches accumulated per update."""


def knob_savings() -> dict[str, int]:
    """Bytes each knob of exercise 05.1 saves on the predicted peak (the estimator)."""
    base = estimate_training_memory("smollm2-135m-instruct", **KNOB_CONFIG).total
    return {
        knob: base
        - estimate_training_memory("smollm2-135m-instruct", **{**KNOB_CONFIG, **change}).total
        for knob, change in KNOBS.items()
    }


def _best_knob() -> str:
    savings = knob_savings()
    return max(savings, key=savings.get)


register(
    "05.1",
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


# ---------------------------------------------------------------- 05.2
@dataclasses.dataclass(frozen=True)
class StepRecord:
    """What one optimizer step of a trainer did: micro-batch sizes, checkpointing."""

    micro_batches: tuple[int, ...]
    checkpointing: bool
    optimizer_steps: int


COMMON = {"use_cpu": True, "bf16": False}
"""Exercise 05.2: what the check passes as ``**common`` (SFTConfig refuses its bf16 default
on a machine without a GPU unless told ``use_cpu``)."""


def reference_config(output_dir, **common):
    """An SFTConfig: micro-batches of 2, 4 accumulated per update, activation checkpointing on."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        **common,
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        activation_checkpointing=True,
    )


def run_one_step(config) -> StepRecord:
    """Train the tiny model for one optimizer step with `config` and record what ran.

    A hook on the embedding records the micro-batches (it runs once per micro-batch);
    after training, the model says whether the trainer turned activation checkpointing
    on. Only the settings that make the run short and quiet are overridden.
    """
    from transformers import TrainingArguments
    from transformers.utils import logging as hf_logging

    from .. import models, training

    if not isinstance(config, TrainingArguments):
        raise AnswerMissing(
            f"return an SFTConfig (from trl import SFTConfig), got {type(config).__name__}"
        )
    model, tokenizer = models.load_model("tiny-random-smollm2", device="cpu")
    micro = []
    model.model.embed_tokens.register_forward_hook(
        lambda module, args, output: micro.append(int(args[0].shape[0]))
    )
    verbosity = hf_logging.get_verbosity()
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        hf_logging.set_verbosity_error()
        try:
            run = dataclasses.replace(
                config,
                output_dir=tmp,
                max_steps=1,
                report_to="none",
                save_strategy="no",
                logging_strategy="no",
                disable_tqdm=True,
                use_cpu=True,
                bf16=False,
                fp16=False,
            )
            rows = load_dataset("yoda", "train").select(range(16))
            trainer = training.build_trainer(
                model,
                tokenizer,
                rows,
                run,
                peft_config=training.lora_config(r=4),
                lm_head="trl",
                batch_order="random",
            )
            trainer.train()
        finally:
            hf_logging.set_verbosity(verbosity)
    checkpointing = bool(trainer.model.get_base_model().is_activation_checkpointing)
    return StepRecord(tuple(micro), checkpointing, trainer.state.global_step)


def _record(answer) -> StepRecord:
    if not callable(answer):  # refused with a hint (and not hashable for the cache)
        call_answer(answer)
    return _recorded_run(answer)


@functools.lru_cache(maxsize=8)  # the check and its hints look at the same run
def _recorded_run(answer) -> StepRecord:
    return run_one_step(call_answer(answer, "outputs/05_exercise", **COMMON))


CHECKPOINTING_KEYWORDS = ("activation_checkpointing", "gradient_checkpointing")
"""Exercise 05.2: the answer must set one of these itself; trl 1.16 turns both on by default,
and a course that relies on a default cannot say what its recipe does when the default changes."""


def _sets_checkpointing(answer) -> bool:
    return bool(keywords_set(answer) & set(CHECKPOINTING_KEYWORDS))


def _right_run(answer, expected) -> bool:
    record = _record(answer)
    return (
        record.optimizer_steps == 1
        and record.micro_batches == (MICRO_BATCH,) * ACCUMULATION
        and record.checkpointing
        and _sets_checkpointing(answer)
    )


def _config_hint(answer, expected):
    record = _record(answer)
    sizes, n = record.micro_batches, len(record.micro_batches)
    if set(sizes) != {MICRO_BATCH}:
        return (
            f"the trainer ran micro-batches of {sorted(set(sizes))} sequences: set "
            f"per_device_train_batch_size to {MICRO_BATCH}"
        )
    if n != ACCUMULATION:
        return (
            f"one update summed {n} micro-batch(es): set gradient_accumulation_steps to "
            f"{ACCUMULATION}"
        )
    if not record.checkpointing:
        return (
            "the trained model reports activation checkpointing off: turn it on "
            "(activation_checkpointing=True)"
        )
    if not _sets_checkpointing(answer):
        return (
            "checkpointing is on only because trl's default turns it on: set "
            "activation_checkpointing=True yourself, so the recipe says what it does"
        )
    return None


register(
    "05.2",
    "Write answer_05_2(output_dir, **common) returning an SFTConfig that trains with "
    f"micro-batches of {MICRO_BATCH} sequences, sums {ACCUMULATION} of them per optimizer "
    "step and recomputes activations in the backward pass.",
    lambda: reference_config,
    _right_run,
    hints=[_config_hint],
    fallback_hint="return SFTConfig(output_dir=output_dir, **common, ...) with the three settings",
)


# ---------------------------------------------------------------- 05.3
STATE_CASES = (
    (360_000_000, 360_000_000, 4),  # full fine-tuning in fp32
    (1_700_000_000, 18_000_000, 2),  # LoRA on a bf16 base
    (7_000_000_000, 40_000_000, 0.5),  # LoRA on a 4-bit base (QLoRA)
)
"""Exercise 05.3: (all parameters, trainable parameters, bytes per stored weight); sizes
the chapter never shows."""

GRADIENT_BYTES, ADAM_STATE_BYTES = 4, 8
"""fp32 gradients for the trainable parameters, and AdamW's two fp32 moments."""


def model_state_bytes(total_parameters, trainable_parameters, weight_bytes):
    """The reference for 05.3: weights, plus gradient and AdamW moments per trainable one."""
    return total_parameters * weight_bytes + trainable_parameters * (
        GRADIENT_BYTES + ADAM_STATE_BYTES
    )


def _state_answers(answer) -> list[float]:
    return [as_number(call_answer(answer, *case)) for case in STATE_CASES]


def _same_state_bytes(answer, expected) -> bool:
    import math

    return all(
        math.isclose(got, model_state_bytes(*case), rel_tol=1e-6)
        for got, case in zip(_state_answers(answer), STATE_CASES, strict=True)
    )


def _state_hint(answer, expected):
    import math

    for got, (total, trainable, weight_bytes) in zip(
        _state_answers(answer), STATE_CASES, strict=True
    ):
        if math.isclose(got, model_state_bytes(total, trainable, weight_bytes), rel_tol=1e-6):
            continue
        if math.isclose(got, total * weight_bytes, rel_tol=1e-6):
            return "that is the weights alone: training adds a gradient and two AdamW moments"
        if math.isclose(got, total * weight_bytes + trainable * GRADIENT_BYTES, rel_tol=1e-6):
            return "weights and gradients: AdamW keeps two fp32 moments per trainable parameter"
        if math.isclose(got, total * (weight_bytes + 12), rel_tol=1e-6) and total != trainable:
            return "only the trainable parameters get a gradient and optimizer states"
        if math.isclose(got, total * weight_bytes + trainable * 8, rel_tol=1e-6):
            return "one moment is missing, or the gradient: 4 + 8 bytes per trainable parameter"
        if math.isclose(got, total * weight_bytes + trainable * 3 * weight_bytes, rel_tol=1e-6):
            return "gradients and AdamW's moments stay fp32 (4 bytes) whatever the weights' dtype"
        return None
    return None


register(
    "05.3",
    "Write answer_05_3(total_parameters, trainable_parameters, weight_bytes): the bytes of "
    "the model states in one AdamW training step: every weight at weight_bytes, and for "
    "each trainable parameter an fp32 gradient and AdamW's two fp32 moments.",
    lambda: model_state_bytes,
    _same_state_bytes,
    hints=[_state_hint],
    fallback_hint="weights for all parameters; gradient + 2 moments only for the trainable ones",
)
