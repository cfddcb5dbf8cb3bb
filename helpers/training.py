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
- seeds fixed, so a run repeats its random draws (machines may still differ in the last digits).
- the loss sends only the *scored* positions (those whose next token carries
  loss: the answer) through the 49,152-wide output layer. trl's own loss
  projects every position, prompt and padding included, and recomputes that
  in the backward pass; on a CPU the course's way was measured 1.4-1.9x faster
  per useful token with about a fifth less peak memory (``make bench``,
  ``bench/results.json``), for the same loss. ``build_trainer(..., lm_head="trl")``
  gives trl's way back. The course's loss runs only where it was checked to equal
  trl's (an allow-list, ``scored_head_blockers``: a Llama-family model, LoRA or no
  adapter, one process, the NLL loss, no fp16); anywhere else trl's loss runs.
- batches of examples of similar lengths, in random order (``batch_order="bucketed"``):
  under 1% padding instead of 18% on the Yoda data. Measured 1.1-1.2x useful tokens/s
  against a random order (``make bench``); ``batch_order="random"`` gives
  transformers' shuffle back.
- ``torch_compile`` off: on a 2-core CPU compiling costs minutes that a chapter's
  training does not win back (``bench/compile/results.md``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from . import hardware
from .bnb_cpu import repacked_layers
from .data import check_sft_format
from .lora import LORA_TARGETS_ALL_LINEAR, adapted_linears
from .models import check_quantization, is_quantized
from .sampling import BucketedSampler

# peft's `is_gradient_checkpointing` FutureWarning is filtered in helpers/__init__.py.


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
    quantization: str | None = None,
    **overrides: Any,
):
    """A trl ``SFTConfig`` with the course's CPU/GPU-aware defaults (see the module docstring).

    `device`: where to train; by default ``hardware.training_device(quantization)``, the
    device ``helpers.load_model`` puts a model of that `quantization` on (a 4-bit model
    on an Apple-silicon Mac trains on the CPU). ``build_trainer`` also moves the
    arguments to the CPU when the model it gets is quantized and sits there.
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
    check_quantization(quantization)
    device = device or hardware.training_device(quantization)
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


def _check_lora_fits(model, peft_config) -> None:
    """Refuse a rank larger than the layers it adapts (the update would not be low-rank).

    The layers are found by ``lora.adapted_linears``, peft's matching rule in one place.
    """
    targets = getattr(peft_config, "target_modules", None)
    if targets is None or getattr(peft_config, "r", None) is None:
        return  # not LoRA, or peft picks its own default layers for the architecture
    layers = adapted_linears(model, targets)
    if not layers:
        return
    smallest = min(min(shape) for shape in layers.values())
    if peft_config.r > smallest:
        raise ValueError(
            f"LoRA rank r={peft_config.r} exceeds the smallest adapted layer dimension "
            f"({smallest}); a rank that large is not a low-rank update. Use r <= {smallest} "
            "(typical values: 4 to 64)."
        )


def _model_device(model) -> str:
    param = next(model.parameters(), None)
    return "cpu" if param is None else param.device.type


def _args_where_the_model_is(model, args):
    """Training arguments that train a quantized model where it was loaded.

    ``Trainer`` cannot move a quantized model, so on a machine whose best device cannot
    run bitsandbytes (an Apple-silicon Mac) a 4-bit model stays on the CPU, and the
    arguments built without `quantization` must follow it there.
    """
    if not is_quantized(model) or args.use_cpu or _model_device(model) != "cpu":
        return args
    if hardware.device_name() == "cpu":
        return args  # the arguments' default device already is the CPU
    return dataclasses.replace(args, use_cpu=True, bf16=hardware.bf16_native("cpu"))


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
    in random order (less padding; see ``helpers.sampling.bucketed_order``); ``"random"``:
    transformers' shuffle.
    """
    import datasets

    # trl tokenizes with datasets.map, whose progress bars print timings nbval cannot compare.
    datasets.disable_progress_bars()
    check_sft_format(train_dataset)
    if eval_dataset is not None:
        check_sft_format(eval_dataset)
    args = _args_where_the_model_is(model, args if args is not None else sft_config())
    if is_quantized(model) and peft_config is None and not hasattr(model, "peft_config"):
        raise ValueError(
            "This model is quantized (8-bit or 4-bit): its weights cannot be trained directly. "
            "Train LoRA adapters on top of it instead: build_trainer(..., "
            "peft_config=helpers.lora_config())."
        )
    if peft_config is not None:
        _check_lora_fits(model, peft_config)
    if repacked_layers(model):
        raise ValueError(
            f"{repacked_layers(model)} of this model's 4-bit layers were repacked by bitsandbytes "
            "for fast CPU inference (it does that on CPUs with AVX512-BF16 the first time the "
            "model generates), and that layout passes no gradient: training would silently "
            "learn nothing. Load the model with helpers.load_model(..., quantization='4bit'), "
            "which keeps the trainable layout, or call helpers.bnb_cpu.keep_trainable_layout("
            "model) right after loading it, before generating."
        )
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
    if is_quantized(model) and not hardware.bf16_native(_model_device(model)):
        _adapters_to_fp32(trainer.model)
    return trainer


LM_HEAD_CHOICES = ("scored", "trl")
BATCH_ORDER_CHOICES = ("random", "bucketed")


SCORED_HEAD_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
"""Model types whose causal-LM head is ``logits = lm_head(body(...).last_hidden_state)``.

Checked in their transformers 5.23 source: no scaling or soft-capping of the logits.
The scored-head loss runs only on these (Gemma 2 soft-caps, Granite and Cohere scale).
"""

_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _known_causal_lm(model):
    """(the causal LM whose body and head the scored loss calls, None) or (None, why not)."""
    import torch
    from peft import PeftModel, PeftType
    from transformers import PreTrainedModel

    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # Its forward prepares the gradient all-reduce; calling the body directly skips it.
        return None, "the model is wrapped for distributed training (DistributedDataParallel)"
    if isinstance(model, PeftModel):
        kinds = sorted(str(c.peft_type.value) for c in model.peft_config.values())
        if any(c.peft_type != PeftType.LORA for c in model.peft_config.values()):
            return None, f"the peft adapter is {', '.join(kinds)}, not LoRA"
        model = model.get_base_model()
    if not isinstance(model, PreTrainedModel):
        return None, f"{type(model).__name__} is not a transformers model"
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SCORED_HEAD_MODEL_TYPES:
        return None, f"model type {model_type!r} is not one of {SCORED_HEAD_MODEL_TYPES}"
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings()
    linear = head if isinstance(head, torch.nn.Linear) else getattr(head, "base_layer", None)
    if (
        not isinstance(body, torch.nn.Module)
        or body is model
        or not isinstance(linear, torch.nn.Linear)
    ):
        return None, f"{type(model).__name__} has no separate body and linear output layer"
    for name in _LOGIT_TRANSFORMS:
        if getattr(model.config, name, None) not in (None, 1, 1.0):
            return None, f"the model transforms its logits ({name})"
    return model, None


def scored_head_blockers(trainer, model=None, inputs=None, *, return_outputs=False) -> list[str]:
    """Why `trainer` would use trl's loss instead of the scored-head loss (empty: it would not).

    An allow-list: the scored loss runs only when every condition under which it was
    checked to give trl's loss and gradients holds. `model` defaults to ``trainer.model``;
    with `inputs` (a batch) the batch's own conditions are checked too. ``compute_loss``
    asks this very function, so ``uses_scored_head`` cannot disagree with the path taken.
    """
    reasons = []
    args = trainer.args
    if not hasattr(trainer, "scored_head"):
        return [f"{type(trainer).__name__} is not the course's trainer (helpers.build_trainer)"]
    if not trainer.scored_head:
        reasons.append("lm_head='trl' was asked for")
    if return_outputs:
        reasons.append("the caller asks for the logits (return_outputs=True)")
    if args.loss_type != "nll":
        reasons.append(f"loss_type={args.loss_type!r} (the scored loss is 'nll')")
    if args.fp16:
        reasons.append("fp16 (the scored loss autocasts to bf16 only)")
    if getattr(args, "use_liger_kernel", False):
        reasons.append("use_liger_kernel (liger fuses its own loss)")
    if args.world_size > 1 or trainer.accelerator.num_processes > 1:
        reasons.append("more than one process (trl gathers its metrics across them)")
    if trainer.compute_loss_func is not None:
        reasons.append("a compute_loss_func")
    if trainer.label_smoother is not None:
        reasons.append("label smoothing")
    if getattr(trainer, "aux_loss_enabled", False):
        reasons.append("an auxiliary (router) loss")
    if not trainer.model_accepts_loss_kwargs or trainer.loss_is_scaled_for_ga is not None:
        # the scored loss divides by the tokens of the whole accumulated batch itself
        reasons.append("Trainer would scale the loss for gradient accumulation itself")
    model = trainer.model if model is None else model
    _, why_not = _known_causal_lm(_uncompiled(model))
    if why_not:
        reasons.append(why_not)
    if inputs is not None:
        if "labels" not in inputs:
            reasons.append("the batch has no labels")
        if "shift_labels" in inputs:
            reasons.append("the batch brings its own shift_labels")
    return reasons


def uses_scored_head(trainer, model=None, inputs=None) -> bool:
    """Whether `trainer` runs the output layer on the scored positions only.

    Answered by ``scored_head_blockers``, the predicate ``compute_loss`` follows, for the
    trainer's model and arguments (and for a batch, given `inputs`).
    """
    return not scored_head_blockers(trainer, model, inputs)


def _uncompiled(model):
    """The module that ``torch.compile`` wrapped, or `model` itself."""
    original = getattr(model, "_orig_mod", None)
    return original if original is not None and hasattr(original, "forward") else model


def __getattr__(name: str):
    # ``CourseSFTTrainer`` subclasses trl's ``SFTTrainer``, and importing trl takes seconds:
    # the class is built on first access so that ``import helpers.training`` stays fast.
    if name == "CourseSFTTrainer":
        return _course_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _course_trainer_class():
    """``SFTTrainer`` with the course's two options (``helpers.training.CourseSFTTrainer``).

    It is built on first use, not at import: subclassing needs trl, whose import takes
    seconds, and ``import helpers`` must stay instant.

    ``scored_head``: the loss runs the output layer on the scored positions only, when
    ``scored_head_blockers`` finds nothing against it; otherwise trl's loss runs,
    unchanged. ``bucketed_batches``: the training sampler is
    ``helpers.sampling.BucketedSampler``.
    """
    import torch
    from trl import SFTTrainer

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

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if scored_head_blockers(self, model, inputs, return_outputs=return_outputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return self._scored_loss(model, inputs, num_items_in_batch)

        def _scored_loss(self, model, inputs, num_items_in_batch):
            """trl's NLL loss, with the output layer run on the scored positions only."""
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            causal_lm, _ = _known_causal_lm(_uncompiled(model))
            backbone = self._backbone(causal_lm)
            # Calling the backbone skips the autocast that accelerate wraps around the
            # top-level forward, so apply it here (bf16 only where the hardware has it).
            with torch.autocast(labels.device.type, torch.bfloat16, enabled=bool(self.args.bf16)):
                hidden = backbone(**inputs, use_cache=False).last_hidden_state
                targets = labels[:, 1:]
                scored = targets != -100
                logits = causal_lm.get_output_embeddings()(hidden[:, :-1][scored])
            logits = logits.float()
            # Divided by the tokens of the whole accumulated batch when Trainer counts them
            # (it then leaves the loss unscaled), else by this micro-batch's: trl's rule.
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

    CourseSFTTrainer.__module__ = __name__
    CourseSFTTrainer.__qualname__ = "CourseSFTTrainer"
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
