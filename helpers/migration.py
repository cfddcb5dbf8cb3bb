"""Old trl/transformers/peft calls and what the pinned versions want instead.

Most fine-tuning code on the web (and in books) was written for older releases. Each
row of :data:`MIGRATIONS` maps one old call to the pinned one and carries a check
that runs against the installed libraries: the new spelling exists and works, the
old one is gone or warns that it is deprecated. ``tests/test_migration.py`` runs
every check, so the table fails loudly when a release makes it stale.

``print(helpers.migration.table())`` shows it; ``python -m helpers.migration``
prints it and runs the checks.
"""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from . import api


class StaleMigration(AssertionError):
    """A row of the migration table no longer matches the installed libraries."""


@dataclass(frozen=True)
class Migration:
    where: str  # the class or function the change is in
    old: str  # what older code writes
    new: str  # what the pinned libraries want
    status: str  # what the old spelling does now: "removed" or "deprecated"
    note: str
    check: Callable[[], None]  # raises StaleMigration when the row no longer holds


# ----------------------------------------------------------------------------- probes


def _fail(message: str) -> None:
    raise StaleMigration(message)


def _gone(target: str) -> None:
    """`target` (a dotted name) no longer exists."""
    try:
        api.resolve(target)
    except (AttributeError, ImportError):
        return
    _fail(f"{target} still exists: the row says it was removed")


def _exists(target: str):
    try:
        return api.resolve(target)
    except (AttributeError, ImportError) as err:
        _fail(f"{target} is missing: {err}")


def _keyword_gone(target: str, keyword: str) -> None:
    found = api.check_keyword(_exists(target), keyword)
    if not found or found[0] != "unknown keyword":
        _fail(f"{target} still accepts {keyword}= ({found[1] if found else 'no warning'})")


def _keyword_current(target: str, keyword: str) -> None:
    found = api.check_keyword(_exists(target), keyword)
    if found:
        _fail(f"{target}({keyword}=): {found[0]}: {found[1]}")


def _keyword_deprecated(target: str, keyword: str, value=True) -> None:
    found = api.check_keyword(_exists(target), keyword, value)
    if not found or found[0] != "deprecated":
        _fail(f"{target}({keyword}=) is no longer deprecated ({found or 'accepted silently'})")


def _warnings_of(build: Callable[[], object]) -> tuple[object, list[str]]:
    """What `build()` returns, and the warnings and library log warnings it raised."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in a check
    try:
        return api.capture_warnings(build)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _sft_config(**kwargs):
    from trl import SFTConfig

    # Constructible on any machine: no bf16 on a CPU without it, no logging service.
    base = {"output_dir": tempfile.gettempdir(), "use_cpu": True, "bf16": False}
    if "gradient_checkpointing" not in kwargs:
        # trl defaults the deprecated name to True, which warns unless the new one is set.
        kwargs.setdefault("activation_checkpointing", False)
    return SFTConfig(**base, report_to="none", **kwargs)


def _training_arguments(**kwargs):
    from transformers import TrainingArguments

    base = {"output_dir": tempfile.gettempdir(), "use_cpu": True, "report_to": "none"}
    return TrainingArguments(**base, **kwargs)


def _rejects(build: Callable[[], object], what: str) -> None:
    try:
        build()
    except TypeError:
        return
    _fail(f"{what} is accepted again")


# ------------------------------------------------------------------------------ rows


def _check_processing_class():
    for trainer in ("trl.SFTTrainer", "transformers.Trainer"):
        _keyword_current(trainer, "processing_class")
        _keyword_gone(trainer, "tokenizer")


def _check_max_length():
    _keyword_gone("trl.SFTConfig", "max_seq_length")
    if _sft_config(max_length=64).max_length != 64:
        _fail("SFTConfig(max_length=64) does not keep 64")


def _check_sft_trainer_arguments():
    for keyword in ("dataset_text_field", "max_seq_length", "packing", "dataset_kwargs"):
        _keyword_gone("trl.SFTTrainer", keyword)
    for keyword in ("dataset_text_field", "packing", "dataset_kwargs"):
        _keyword_current("trl.SFTConfig", keyword)


def _check_completion_only():
    _gone("trl.DataCollatorForCompletionOnlyLM")
    _gone("trl.trainer.utils.DataCollatorForCompletionOnlyLM")
    config = _sft_config(completion_only_loss=True, assistant_only_loss=False)
    if config.completion_only_loss is not True:
        _fail("SFTConfig(completion_only_loss=True) is not kept")
    if _sft_config().completion_only_loss is not None:
        _fail("completion_only_loss no longer defaults to None (on for prompt-completion data)")
    _keyword_current("trl.SFTConfig", "assistant_only_loss")


def _check_chat_format():
    _gone("trl.setup_chat_format")
    _gone("trl.models.utils.setup_chat_format")
    clone = _exists("trl.clone_chat_template")
    parameters = list(api.signature(clone).parameters)[:3]
    if parameters != ["model", "tokenizer", "source_tokenizer_path"]:
        _fail(f"trl.clone_chat_template takes {parameters} now")
    from .models import load_model, prepare_model

    model, tokenizer = load_model("tiny-random-smollm2", device="cpu")
    result, _ = _warnings_of(
        lambda: clone(model, tokenizer, str(prepare_model("tiny-random-smollm2")))
    )
    if not isinstance(result, tuple) or len(result) != 3:
        _fail(f"clone_chat_template returns {type(result).__name__}, not (model, tokenizer, added)")


def _check_dtype():
    import torch
    from transformers import AutoModelForCausalLM

    from .models import prepare_model

    path = str(prepare_model("tiny-random-smollm2"))
    model, _ = _warnings_of(lambda: AutoModelForCausalLM.from_pretrained(path, dtype=torch.float16))
    if model.dtype != torch.float16:
        _fail(f"from_pretrained(dtype=torch.float16) gave {model.dtype}")
    model, messages = _warnings_of(
        lambda: AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float16)
    )
    if not any("torch_dtype" in m and "deprecat" in m.lower() for m in messages):
        _fail(f"from_pretrained(torch_dtype=...) no longer warns (warnings: {messages})")


def _check_warmup():
    _keyword_gone("transformers.TrainingArguments", "warmup_ratio")
    _keyword_gone("trl.SFTConfig", "warmup_ratio")
    steps = _sft_config(warmup_steps=0.1).get_warmup_steps(200)
    if steps != 20:
        _fail(f"warmup_steps=0.1 over 200 steps gives {steps} warmup steps, not 20")


def _check_group_by_length():
    _keyword_gone("transformers.TrainingArguments", "group_by_length")
    config = _sft_config(train_sampling_strategy="group_by_length")
    if config.train_sampling_strategy != "group_by_length":
        _fail("train_sampling_strategy='group_by_length' is not kept")


def _check_activation_checkpointing():
    _keyword_current("transformers.TrainingArguments", "activation_checkpointing")
    _keyword_deprecated("transformers.TrainingArguments", "gradient_checkpointing")
    _keyword_deprecated("trl.SFTConfig", "gradient_checkpointing")
    _keyword_deprecated("transformers.TrainingArguments", "gradient_checkpointing_kwargs", {})
    config, messages = _warnings_of(lambda: _sft_config(activation_checkpointing=True))
    if not config.activation_checkpointing or any("deprecat" in m.lower() for m in messages):
        _fail(f"SFTConfig(activation_checkpointing=True) misbehaves: {messages}")
    config, messages = _warnings_of(lambda: _sft_config(gradient_checkpointing=True))
    if not any("gradient_checkpointing" in m and "deprecat" in m.lower() for m in messages):
        _fail("SFTConfig(gradient_checkpointing=True) no longer warns")


def _check_checkpointing_method():
    from transformers import PreTrainedModel

    if not api.check_deprecated_callable(PreTrainedModel.gradient_checkpointing_enable):
        _fail("PreTrainedModel.gradient_checkpointing_enable() is no longer deprecated")
    _exists("transformers.PreTrainedModel.activation_checkpointing_enable")
    if api.check_deprecated_callable(PreTrainedModel.activation_checkpointing_enable):
        _fail("activation_checkpointing_enable() is deprecated now")


def _check_eval_strategy():
    _keyword_gone("transformers.TrainingArguments", "evaluation_strategy")
    if _sft_config(eval_strategy="steps", eval_steps=5).eval_strategy != "steps":
        _fail("eval_strategy='steps' is not kept")


def _check_packing():
    _gone("trl.ConstantLengthDataset")
    _gone("trl.trainer.utils.ConstantLengthDataset")
    for keyword in ("num_of_sequences", "chars_per_token", "dataset_batch_size"):
        _keyword_gone("trl.SFTConfig", keyword)
    if not _sft_config(packing=True).packing:
        _fail("SFTConfig(packing=True) is not kept")


def _check_logging_dir():
    import inspect

    from transformers.integrations.integration_utils import TensorBoardCallback

    _keyword_gone("transformers.TrainingArguments", "logging_dir")
    if "TENSORBOARD_LOGGING_DIR" not in inspect.getsource(TensorBoardCallback):
        _fail("TensorBoardCallback no longer reads TENSORBOARD_LOGGING_DIR")


def _check_use_cpu():
    _keyword_gone("transformers.TrainingArguments", "no_cuda")
    if not _training_arguments().use_cpu:
        _fail("TrainingArguments(use_cpu=True) is not kept")


def _check_per_device():
    _keyword_gone("transformers.TrainingArguments", "per_gpu_train_batch_size")
    _keyword_gone("transformers.TrainingArguments", "per_gpu_eval_batch_size")
    if _training_arguments(per_device_train_batch_size=3).per_device_train_batch_size != 3:
        _fail("per_device_train_batch_size=3 is not kept")


def _check_load_in_8bit():
    import transformers

    from .models import prepare_model

    path = str(prepare_model("tiny-random-smollm2"))
    for keyword in ("load_in_8bit", "load_in_4bit"):
        _rejects(
            lambda keyword=keyword: _warnings_of(
                lambda: transformers.AutoModelForCausalLM.from_pretrained(path, **{keyword: True})
            ),
            f"from_pretrained({keyword}=True)",
        )
    _keyword_current("transformers.BitsAndBytesConfig", "load_in_8bit")
    _keyword_current("transformers.BitsAndBytesConfig", "load_in_4bit")


def _check_kbit_training():
    _gone("peft.prepare_model_for_int8_training")
    _exists("peft.prepare_model_for_kbit_training")


def _check_overwrite_output_dir():
    _keyword_gone("transformers.TrainingArguments", "overwrite_output_dir")


def _tiny_trainer(**config):
    """(the SFTTrainer built on the tiny model with these SFTConfig settings, its warnings)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from .models import load_model

    model, tokenizer = load_model("tiny-random-smollm2", device="cpu")
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "completion": [{"role": "assistant", "content": "yo"}],
        }
    ]
    data = Dataset.from_list(rows * 2)
    return _warnings_of(
        lambda: SFTTrainer(
            model=model, processing_class=tokenizer, train_dataset=data, args=_sft_config(**config)
        )
    )


def _check_liger():
    _keyword_gone("transformers.TrainingArguments", "use_liger")
    _keyword_current("transformers.TrainingArguments", "use_liger_kernel")
    _, messages = _tiny_trainer(use_liger_kernel=True)
    if not any("use_liger_kernel" in m and "deprecated" in m for m in messages):
        _fail("SFTTrainer no longer warns that use_liger_kernel=True is deprecated")


def _check_dataset_formatting():
    _gone("trl.extras.dataset_formatting")
    for name in ("FORMAT_MAPPING", "instructions_formatting_function"):
        _gone(f"trl.extras.dataset_formatting.{name}")
    _gone("trl.extras.dataset_formatting.conversations_formatting_function")


def _check_keys_to_not_convert():
    _gone("transformers.integrations.bitsandbytes.get_keys_to_not_convert")
    _gone("transformers.utils.bitsandbytes.get_keys_to_not_convert")
    _keyword_current("transformers.BitsAndBytesConfig", "llm_int8_skip_modules")


def _check_trainer_needs_data():
    from trl import SFTTrainer

    from .models import load_model

    model, tokenizer = load_model("tiny-random-smollm2", device="cpu")
    try:
        SFTTrainer(model=model, processing_class=tokenizer, args=_sft_config())
    except ValueError as err:
        if "train_dataset" in str(err):
            return
        _fail(f"SFTTrainer without train_dataset raised another error: {err}")
    _fail("SFTTrainer(model=...) without train_dataset is accepted again")


def _check_kbit_checkpointing():
    from peft import prepare_model_for_kbit_training

    from .models import load_model

    def prepared(**kwargs):
        model, _ = load_model("tiny-random-smollm2", quantization="4bit", device="cpu")
        return _warnings_of(lambda: prepare_model_for_kbit_training(model, **kwargs))[1]

    if not any("gradient_checkpointing_enable" in m and "deprecated" in m for m in prepared()):
        _fail("prepare_model_for_kbit_training(model) no longer warns about gradient_checkpointing")
    quiet = prepared(use_gradient_checkpointing=False)
    if any("deprecated" in m for m in quiet):
        _fail(
            f"prepare_model_for_kbit_training(..., use_gradient_checkpointing=False) warns: {quiet}"
        )


def _check_grpo_prompt_length():
    _keyword_gone("trl.GRPOConfig", "max_prompt_length")
    _keyword_current("trl.GRPOConfig", "max_completion_length")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "SFTTrainer / Trainer",
        "tokenizer=tokenizer",
        "processing_class=tokenizer",
        "removed",
        "the argument also takes processors for multimodal models",
        _check_processing_class,
    ),
    Migration(
        "SFTConfig",
        "max_seq_length=512",
        "max_length=512",
        "removed",
        "sequences are cut to max_length tokens",
        _check_max_length,
    ),
    Migration(
        "SFTTrainer",
        "SFTTrainer(dataset_text_field=..., max_seq_length=..., packing=...)",
        "SFTConfig(dataset_text_field=..., max_length=..., packing=...)",
        "removed",
        "data options live in the config, not in the trainer",
        _check_sft_trainer_arguments,
    ),
    Migration(
        "trl",
        "DataCollatorForCompletionOnlyLM(response_template, ...)",
        "prompt-completion data + SFTConfig(completion_only_loss=True)",
        "removed",
        "on by default for prompt/completion columns; conversations: assistant_only_loss=True",
        _check_completion_only,
    ),
    Migration(
        "trl",
        "setup_chat_format(model, tokenizer)",
        "model, tokenizer, added = clone_chat_template(model, tokenizer, source_tokenizer_path)",
        "removed",
        "not a drop-in: it copies the template of another tokenizer (which you must name), "
        "adds that tokenizer's special tokens, resizes the embeddings and returns three values; "
        "a model whose tokenizer has a chat template (SmolLM2-Instruct) needs neither",
        _check_chat_format,
    ),
    Migration(
        "from_pretrained",
        "torch_dtype=torch.bfloat16",
        "dtype=torch.bfloat16",
        "deprecated",
        "the old name still loads but logs a deprecation warning",
        _check_dtype,
    ),
    Migration(
        "from_pretrained",
        "load_in_8bit=True / load_in_4bit=True",
        "quantization_config=BitsAndBytesConfig(load_in_8bit=True)",
        "removed",
        "the old keywords raise a TypeError",
        _check_load_in_8bit,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "warmup_ratio=0.1",
        "warmup_steps=0.1",
        "removed",
        "a warmup_steps below 1 is a fraction of the training steps",
        _check_warmup,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "group_by_length=True",
        'train_sampling_strategy="group_by_length"',
        "removed",
        'other samplers: "random" (default), "sequential", "batch_rebalance"',
        _check_group_by_length,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "gradient_checkpointing=True (and gradient_checkpointing_kwargs)",
        "activation_checkpointing=True (and activation_checkpointing_kwargs)",
        "deprecated",
        "FutureWarning; trl's SFTConfig still defaults the old name to True",
        _check_activation_checkpointing,
    ),
    Migration(
        "model",
        "model.gradient_checkpointing_enable()",
        "model.activation_checkpointing_enable()",
        "deprecated",
        "FutureWarning, removal announced for transformers 6",
        _check_checkpointing_method,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        'evaluation_strategy="steps"',
        'eval_strategy="steps"',
        "removed",
        "",
        _check_eval_strategy,
    ),
    Migration(
        "trl",
        "ConstantLengthDataset(tokenizer, dataset, ...)",
        "SFTConfig(packing=True)",
        "removed",
        "num_of_sequences, chars_per_token and dataset_batch_size went with it",
        _check_packing,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        'logging_dir="runs/x"',
        "TENSORBOARD_LOGGING_DIR=runs/x (environment)",
        "removed",
        "without it TensorBoard logs go to output_dir/runs/",
        _check_logging_dir,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "no_cuda=True",
        "use_cpu=True",
        "removed",
        "",
        _check_use_cpu,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "per_gpu_train_batch_size=8",
        "per_device_train_batch_size=8",
        "removed",
        "the same for per_gpu_eval_batch_size",
        _check_per_device,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "overwrite_output_dir=True",
        "(drop it)",
        "removed",
        "",
        _check_overwrite_output_dir,
    ),
    Migration(
        "TrainingArguments / SFTConfig",
        "use_liger=True, or use_liger_kernel=True",
        'SFTConfig(model_init_kwargs={"use_kernels": True}) (kernels from the Hub)',
        "deprecated",
        "use_liger is gone; SFTTrainer warns that use_liger_kernel=True goes in trl 2.0 and "
        "names Hub kernels instead: not Liger's fused cross-entropy, and model_init_kwargs only "
        "apply to a model passed by name (a loaded one takes from_pretrained(..., "
        "use_kernels=True)); they need the kernels package and a download, so the course uses "
        "neither",
        _check_liger,
    ),
    Migration(
        "trl.extras.dataset_formatting",
        "FORMAT_MAPPING, instructions_formatting_function, conversations_formatting_function",
        "(drop them) a data set with messages or prompt/completion columns",
        "removed",
        "SFTTrainer applies the chat template to conversational columns itself",
        _check_dataset_formatting,
    ),
    Migration(
        "transformers.integrations.bitsandbytes",
        "get_keys_to_not_convert(model)",
        "BitsAndBytesConfig(llm_int8_skip_modules=[...]), or nothing",
        "removed",
        "from_pretrained keeps the LM head unquantized by itself; name other modules to skip",
        _check_keys_to_not_convert,
    ),
    Migration(
        "SFTTrainer",
        "SFTTrainer(model=model, args=config) and the data set later",
        "SFTTrainer(model=model, args=config, train_dataset=dataset)",
        "removed",
        "raises ValueError: `train_dataset` is required (the trainer prepares it when built)",
        _check_trainer_needs_data,
    ),
    Migration(
        "peft",
        "prepare_model_for_kbit_training(model)",
        "prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), and "
        "activation_checkpointing=True in the SFTConfig",
        "deprecated",
        "its default use_gradient_checkpointing=True calls model.gradient_checkpointing_enable(), "
        "which raises transformers' FutureWarning; the trainer turns checkpointing on itself",
        _check_kbit_checkpointing,
    ),
    Migration(
        "peft",
        "prepare_model_for_int8_training(model)",
        "prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)",
        "removed",
        "works for 8-bit and 4-bit models; the old call's checkpointing default warns now (the "
        "row above)",
        _check_kbit_training,
    ),
    Migration(
        "GRPOConfig",
        "max_prompt_length=256",
        "(drop it; shorten the prompts in the data)",
        "removed",
        "prompts are no longer cut; max_completion_length still caps the generated part",
        _check_grpo_prompt_length,
    ),
)


def verify(rows: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """ "where: old -> new: why it is stale" for every row that no longer holds."""
    stale = []
    for row in rows:
        try:
            row.check()
        except StaleMigration as err:
            stale.append(f"{row.where}: {row.old} -> {row.new}: {err}")
    return stale


def table(rows: tuple[Migration, ...] = MIGRATIONS, width: int = 100) -> str:
    """The table as plain text: one entry per row, old call, new call, status and note."""
    lines = []
    for row in rows:
        lines.append(f"{row.where}")
        lines.append(f"  old ({row.status}): {row.old}")
        lines.append(f"  now: {row.new}")
        if row.note:
            lines.extend(
                textwrap.wrap(row.note, width, initial_indent="  ", subsequent_indent="  ")
            )
    return "\n".join(lines)


def markdown(rows: tuple[Migration, ...] = MIGRATIONS) -> str:
    """The table as markdown (for a notebook's Markdown output or the README)."""
    lines = ["| where | old | now | the old spelling | note |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [row.where, f"`{row.old}`", f"`{row.new}`", row.status, row.note]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    print(table())
    stale = verify()
    for line in stale:
        print("STALE", line)
    print(f"{len(MIGRATIONS) - len(stale)}/{len(MIGRATIONS)} rows hold for the installed libraries")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
