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
from . import AnswerMissing, call_answer, one_of, register

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


def _right_run(answer, expected) -> bool:
    record = _record(answer)
    return (
        record.optimizer_steps == 1
        and record.micro_batches == (MICRO_BATCH,) * ACCUMULATION
        and record.checkpointing
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
