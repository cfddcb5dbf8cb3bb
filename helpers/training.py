"""LoRA, SFTConfig and SFTTrainer builders: every trl/peft API detail lives here.

The notebooks show ``LoraConfig`` and ``SFTConfig`` in the open; these builders
add the course's defaults and refuse settings that make no sense, with the
reason. When trl or peft renames something, this file (and its test) is the
one place to change.

Defaults and why:
- ``bf16`` follows the hardware: trl turns bf16 on by default, but on a CPU
  without bf16 instructions it is emulated and training gets many times slower.
- ``gradient_checkpointing`` off: it saves activation memory by recomputing the
  forward pass (about a third more compute); a 135M model at short sequence
  lengths fits without it. Chapter 05 measures the trade.
- ``report_to="none"``: no tracking service is reachable offline.
- seeds fixed, so a run is the same run on every machine.
- the loss sends only the *scored* positions (those whose next token carries
  loss: the answer) through the 49,152-wide output layer. trl's own loss
  projects every position, prompt and padding included, and recomputes that
  in the backward pass; on a CPU the course's way was measured 1.4-1.9x faster
  per useful token with about a fifth less peak memory (``make bench``,
  ``bench/results.json``), for the same loss. ``build_trainer(..., lm_head="trl")``
  gives trl's way back.
- batches of examples of similar lengths, in random order (``batch_order="bucketed"``):
  under 1% padding instead of 18% on the Yoda data. Measured 1.1-1.2x useful tokens/s
  against a random order (``make bench``); ``batch_order="random"`` gives
  transformers' shuffle back.
- ``torch_compile`` off: on a 2-core CPU compiling costs minutes that a chapter's
  training does not win back (``bench/compile/results.md``).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

from . import hardware
from .data import check_sft_format

LORA_TARGETS_ALL_LINEAR = "all-linear"

# peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5.23 renamed;
# the warning points into library code and asks nothing of the learner. Revisit
# when peft is upgraded (tests/test_helpers.py runs get_peft_model with warnings shown).
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)


def _positive_int(name: str, value: Any, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer: {why}.")
    return value


def lora_config(
    r: int = 16,
    lora_alpha: int | None = None,
    target_modules: str | list[str] = LORA_TARGETS_ALL_LINEAR,
    lora_dropout: float = 0.0,
    **kwargs: Any,
):
    """A peft ``LoraConfig`` for causal-LM fine-tuning (alpha defaults to 2·r)."""
    from peft import LoraConfig

    _positive_int("r", r, "it is the rank of the low-rank update, at least 1")
    if not 0.0 <= lora_dropout < 1.0:
        raise ValueError(f"lora_dropout={lora_dropout!r} must be in [0, 1).")
    return LoraConfig(
        r=r,
        lora_alpha=2 * r if lora_alpha is None else lora_alpha,
        target_modules=target_modules,
        lora_dropout=lora_dropout,
        bias="none",
        task_type="CAUSAL_LM",
        **kwargs,
    )


def sft_config(
    output_dir: str = "outputs/sft",
    *,
    max_steps: int = -1,
    num_train_epochs: float = 1.0,
    per_device_train_batch_size: int = 8,
    gradient_accumulation_steps: int = 1,
    learning_rate: float = 1e-3,
    max_length: int = 128,
    gradient_checkpointing: bool = False,
    seed: int = 0,
    device: str | None = None,
    **overrides: Any,
):
    """A trl ``SFTConfig`` with the course's CPU/GPU-aware defaults (see the module docstring).

    Any other ``SFTConfig``/``TrainingArguments`` field can be passed as a keyword.
    """
    from trl import SFTConfig

    _positive_int(
        "per_device_train_batch_size",
        per_device_train_batch_size,
        "it is the number of examples per step",
    )
    _positive_int(
        "gradient_accumulation_steps", gradient_accumulation_steps, "steps summed per update"
    )
    _positive_int("max_length", max_length, "sequences are cut to this many tokens")
    if max_length < 8:
        raise ValueError(
            f"max_length={max_length} leaves no room for a chat template and an answer; "
            "use at least 8 (the Yoda examples need about 70)."
        )
    if max_steps != -1:
        _positive_int("max_steps", max_steps, "or -1 to train for num_train_epochs")
    elif not num_train_epochs > 0:
        raise ValueError(f"num_train_epochs={num_train_epochs!r} must be > 0.")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < 1):
        raise ValueError(
            f"learning_rate={learning_rate!r} must be in (0, 1); LoRA typically uses 1e-4 to 2e-3."
        )
    device = device or hardware.device_name()
    defaults: dict[str, Any] = {
        "output_dir": output_dir,
        "max_steps": max_steps,
        "num_train_epochs": num_train_epochs,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "max_length": max_length,
        # transformers 5.23 renamed gradient_checkpointing -> activation_checkpointing;
        # trl's SFTConfig still defaults the old name to True, which warns. Set the new one.
        "activation_checkpointing": gradient_checkpointing,
        "bf16": hardware.bf16_native(device),
        "fp16": False,
        "use_cpu": device == "cpu",
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 5,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
    }
    defaults.update(overrides)
    return SFTConfig(**defaults)


def _is_quantized(model) -> bool:
    return bool(
        getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    )


def _check_lora_fits(model, peft_config) -> None:
    """Refuse a rank larger than the layers it adapts (the update would not be low-rank)."""
    import torch

    targets = peft_config.target_modules
    smallest = math.inf
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if targets == LORA_TARGETS_ALL_LINEAR or leaf in targets:
            smallest = min(smallest, module.in_features, module.out_features)
    if smallest is not math.inf and peft_config.r > smallest:
        raise ValueError(
            f"LoRA rank r={peft_config.r} exceeds the smallest adapted layer dimension "
            f"({smallest}); a rank that large is not a low-rank update. Use r <= {smallest} "
            "(typical values: 4 to 64)."
        )


def build_trainer(
    model,
    tokenizer,
    train_dataset,
    args=None,
    *,
    peft_config=None,
    eval_dataset=None,
    callbacks=None,
    lm_head: str = "scored",
    batch_order: str = "bucketed",
):
    """An ``SFTTrainer`` after checking the data format, the model and the LoRA rank.

    `lm_head`: ``"scored"`` (the course's default) runs the output layer on the scored
    positions only; ``"trl"`` keeps trl's loss, which runs it on every position.
    `batch_order`: ``"bucketed"`` (the default): batches of examples of similar lengths,
    in random order (less padding; see ``helpers.batches.bucketed_order``); ``"random"``:
    transformers' shuffle.
    """
    import datasets

    # trl tokenizes with datasets.map, whose progress bars print timings nbval cannot compare.
    datasets.disable_progress_bars()
    check_sft_format(train_dataset)
    if eval_dataset is not None:
        check_sft_format(eval_dataset)
    args = args if args is not None else sft_config()
    if _is_quantized(model) and peft_config is None and not hasattr(model, "peft_config"):
        raise ValueError(
            "This model is quantized (8-bit or 4-bit): its weights cannot be trained directly. "
            "Train LoRA adapters on top of it instead: build_trainer(..., "
            "peft_config=helpers.lora_config())."
        )
    if peft_config is not None:
        _check_lora_fits(model, peft_config)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and args.max_length and args.max_length > limit:
        raise ValueError(
            f"max_length={args.max_length} is longer than the model's context window ({limit})."
        )
    if lm_head not in LM_HEAD_CHOICES:
        raise ValueError(
            f"lm_head={lm_head!r} is not one of {LM_HEAD_CHOICES}: 'scored' runs the output "
            "layer on the answer positions only (faster), 'trl' on every position."
        )
    if batch_order not in BATCH_ORDER_CHOICES:
        raise ValueError(
            f"batch_order={batch_order!r} is not one of {BATCH_ORDER_CHOICES}: 'random' "
            "shuffles the examples, 'bucketed' batches examples of similar lengths."
        )
    trainer = _course_trainer_class()(
        scored_head=lm_head == "scored",
        bucketed_batches=batch_order == "bucketed",
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if _is_quantized(model) and not hardware.bf16_native():
        _adapters_to_fp32(trainer.model)
    return trainer


LM_HEAD_CHOICES = ("scored", "trl")
BATCH_ORDER_CHOICES = ("random", "bucketed")


def uses_scored_head(trainer) -> bool:
    """Whether `trainer` runs the output layer on the scored positions only."""
    return bool(getattr(trainer, "scored_head", False))


@functools.cache
def _course_trainer_class():
    """``SFTTrainer`` with the course's two options, built on first use (trl loads lazily).

    ``scored_head``: the loss runs the output layer on the scored positions only. Whenever
    that would not give trl's loss (another ``loss_type``, label smoothing, a custom loss
    function, an auxiliary MoE loss, soft-capped logits, or a caller asking for the
    logits) it hands over to trl unchanged. ``bucketed_batches``: the training sampler
    is ``helpers.batches.BucketedSampler``.
    """
    import torch
    from trl import SFTTrainer

    from .batches import BucketedSampler

    class CourseSFTTrainer(SFTTrainer):
        def __init__(self, *args, scored_head=True, bucketed_batches=False, **kwargs):
            self.scored_head = scored_head
            self.bucketed_batches = bucketed_batches
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if not self.bucketed_batches or "input_ids" not in getattr(dataset, "column_names", ()):
                return super()._get_train_sampler(train_dataset)
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return BucketedSampler(lengths, self.args.train_batch_size, seed=self.args.seed)

        def _scored_head_applies(self, model, inputs, return_outputs) -> bool:
            config = getattr(model, "config", None)
            return self.scored_head and not (
                return_outputs
                or "labels" not in inputs
                or self.args.loss_type != "nll"
                or self.compute_loss_func is not None
                or self.label_smoother is not None
                or self.aux_loss_enabled
                or getattr(config, "final_logit_softcapping", None) is not None
            )

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self._scored_head_applies(model, inputs, return_outputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone = self._backbone(causal_lm)
            # Calling the backbone skips the autocast that accelerate wraps around the
            # top-level forward, so apply it here (bf16 only where the hardware has it).
            with torch.autocast(labels.device.type, torch.bfloat16, enabled=bool(self.args.bf16)):
                hidden = backbone(**inputs, use_cache=False).last_hidden_state
                targets = labels[:, 1:]
                scored = targets != -100
                logits = causal_lm.get_output_embeddings()(hidden[:, :-1][scored])
            logits = logits.float()
            count = scored.sum() if num_items_in_batch is None else num_items_in_batch
            loss = torch.nn.functional.cross_entropy(logits, targets[scored], reduction="sum")
            loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            self._log_token_metrics(inputs, logits.detach(), targets[scored])
            return loss

        def _backbone(self, causal_lm):
            """The transformer body, compiled once when ``torch_compile`` is on.

            This loss calls the body directly, so the compiled wrapper that accelerate
            puts around the whole model is never run; without this, ``torch_compile=True``
            would silently do nothing.
            """
            backbone = getattr(causal_lm, causal_lm.base_model_prefix)
            if not self.args.torch_compile:
                return backbone
            compiled = getattr(self, "_compiled_backbone", None)
            if compiled is None or compiled._orig_mod is not backbone:
                compiled = torch.compile(
                    backbone,
                    backend=self.args.torch_compile_backend or "inductor",
                    mode=self.args.torch_compile_mode,
                )
                self._compiled_backbone = compiled
            return compiled

        def _log_token_metrics(self, inputs, logits, targets) -> None:
            """The entropy, token accuracy and token count that trl's own loss logs."""
            mode = "train" if self.model.training else "eval"
            metrics = self._metrics[mode]
            if len(targets):
                log_probs = torch.log_softmax(logits, dim=-1)
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean().item()
                accuracy = (logits.argmax(-1) == targets).float().mean().item()
            else:
                entropy = accuracy = 0.0
            metrics["entropy"].append(entropy)
            metrics["mean_token_accuracy"].append(accuracy)
            if mode == "train":
                if "attention_mask" in inputs:
                    tokens = int(inputs["attention_mask"].sum())
                else:
                    tokens = int(inputs["input_ids"].numel())
                self._total_train_tokens += tokens
            metrics["num_tokens"] = [self._total_train_tokens]

    return CourseSFTTrainer


def _adapters_to_fp32(model) -> None:
    """Keep LoRA weights in fp32 where bf16 is only emulated.

    For quantized models trl casts the adapters to bf16 (as the QLoRA paper
    does). On hardware without bf16 instructions every adapter matmul is then
    emulated, which made a QLoRA step about twice as slow on a 2-core AVX2 CPU.
    The optimizer is created at ``train()``, so casting here is safe.
    """
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()


def save_adapter(trainer, directory: str) -> list[str]:
    """Save only the LoRA adapter (and the tokenizer) of a trained model; list the files."""
    from pathlib import Path

    trainer.save_model(directory)
    return sorted(p.name for p in Path(directory).iterdir())


def load_adapter(base_model, directory: str):
    """Put a saved LoRA adapter on top of a freshly loaded base model, ready for inference."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base_model, directory)
    model.eval()
    return model
