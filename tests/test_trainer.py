"""The course's trainer: when its scored-head loss runs, and that it then equals trl's.

Every trainer here holds the tiny random model and a few Yoda examples, in fp32
(``bf16=False``): the comparisons are exact to rounding on any CPU.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import helpers
from helpers import training


def _trainer(tmp_path, yoda, lm_head="scored", *, peft_config="lora", rows=8, **config):
    """A trainer on a freshly seeded tiny model (the same weights and adapters every time)."""
    torch.manual_seed(0)
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    if peft_config == "lora":
        peft_config = helpers.lora_config(r=4, init_lora_weights=False)
    config = {"per_device_train_batch_size": 2, "bf16": False, **config}
    args = helpers.sft_config(str(tmp_path), max_steps=2, **config)
    return helpers.build_trainer(
        model,
        tokenizer,
        yoda["train"].select(range(rows)),
        args,
        peft_config=peft_config,
        lm_head=lm_head,
    )


def _batch(trainer, rows):
    return trainer.data_collator([trainer.train_dataset[i] for i in rows])


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def paths(monkeypatch):
    """Counts how often each loss runs: the course's scored loss, and trl's compute_loss."""
    from trl import SFTTrainer

    course = training.CourseSFTTrainer
    calls = {"scored": 0, "trl": 0}
    scored_loss, trl_loss = course._scored_loss, SFTTrainer.compute_loss

    def counted_scored(self, *args, **kwargs):
        calls["scored"] += 1
        return scored_loss(self, *args, **kwargs)

    def counted_trl(self, *args, **kwargs):
        calls["trl"] += 1
        return trl_loss(self, *args, **kwargs)

    monkeypatch.setattr(course, "_scored_loss", counted_scored)
    monkeypatch.setattr(SFTTrainer, "compute_loss", counted_trl)
    return calls


def test_accumulated_gradients_equal_trls_and_the_true_mean_through_training_step(
    yoda, tmp_path, paths
):
    """Two micro-batches of different token counts, accumulated by ``training_step``.

    Both losses must give the gradient of (summed token loss of both) / (their tokens):
    the oracle computes that from the full logits, independently of both.
    """
    micro_rows = [(0, 1), (2, 3, 4, 5)]  # different sizes, so a per-micro-batch mean would differ
    grads, losses = {}, {}
    for lm_head in ("scored", "trl"):
        trainer = _trainer(tmp_path, yoda, lm_head, gradient_accumulation_steps=2)
        assert training.uses_scored_head(trainer) is (lm_head == "scored")
        micro = [_batch(trainer, rows) for rows in micro_rows]
        samples, count = trainer.get_batch_samples(iter(micro), 2, torch.device("cpu"))
        scored = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        assert int(count) == scored
        trainer.model.train()
        losses[lm_head] = [float(trainer.training_step(trainer.model, b, count)) for b in samples]
        grads[lm_head] = _grads(trainer.model)
    assert paths == {"scored": 2, "trl": 2}

    oracle = _trainer(tmp_path, yoda, "trl")
    oracle.model.train()
    total = 0.0
    for batch in micro:
        logits = oracle.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        total = total + torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), reduction="sum"
        )
    (total / scored).backward()
    expected = _grads(oracle.model)

    assert losses["scored"] == pytest.approx(losses["trl"], rel=1e-5)
    assert grads["scored"].keys() == grads["trl"].keys() == expected.keys()
    assert len(expected) == 2 * 7 * 2  # A and B of 7 projections in 2 layers
    for name, want in expected.items():
        for lm_head in ("scored", "trl"):
            assert torch.allclose(grads[lm_head][name], want, rtol=1e-4, atol=1e-7), (lm_head, name)


def test_prompt_tuning_falls_back_to_trls_loss_and_trains(yoda, tmp_path, paths):
    """Virtual tokens enter through PeftModel.forward, which the scored loss would skip."""
    from peft import PromptTuningConfig

    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    trainer = _trainer(tmp_path, yoda, peft_config=config, learning_rate=1e-2)
    assert not training.uses_scored_head(trainer)
    assert any("PROMPT_TUNING" in r for r in training.scored_head_blockers(trainer))
    prompt = trainer.model.prompt_encoder["default"].embedding.weight
    before = prompt.detach().clone()
    trainer.train()
    assert paths == {"scored": 0, "trl": 2}
    assert not torch.equal(before, prompt.detach())


def _label_smoothing(tmp_path, yoda):
    return _trainer(tmp_path, yoda, label_smoothing_factor=0.1), None


def _fp16(tmp_path, yoda):
    try:
        return _trainer(tmp_path, yoda, fp16=True), None
    except (ValueError, RuntimeError) as err:  # fp16 needs a GPU in some releases
        pytest.skip(f"fp16 cannot be configured here: {err}")


def _shift_labels(tmp_path, yoda):
    trainer = _trainer(tmp_path, yoda)
    batch = _batch(trainer, (0, 1))
    shifted = torch.full_like(batch["labels"], -100)
    shifted[:, :-1] = batch["labels"][:, 1:]
    return trainer, {**batch, "shift_labels": shifted}


def _no_loss_kwargs(tmp_path, yoda):
    trainer = _trainer(tmp_path, yoda)
    trainer.model_accepts_loss_kwargs = False
    return trainer, None


def _logit_scaling(tmp_path, yoda):
    trainer = _trainer(tmp_path, yoda)
    trainer.model.get_base_model().config.logits_scaling = 2.0
    return trainer, None


CONFIGURATIONS = {
    # name: (build, the one reason against the scored loss, or None when it runs)
    "course defaults": (lambda t, y: (_trainer(t, y), None), None),
    "without LoRA": (lambda t, y: (_trainer(t, y, peft_config=None), None), None),
    "lm_head='trl'": (lambda t, y: (_trainer(t, y, "trl"), None), "lm_head='trl'"),
    "loss_type='dft'": (lambda t, y: (_trainer(t, y, loss_type="dft"), None), "loss_type"),
    "label smoothing": (_label_smoothing, "label smoothing"),
    "fp16": (_fp16, "fp16"),
    "shift_labels in the batch": (_shift_labels, "shift_labels"),
    "no loss kwargs": (_no_loss_kwargs, "gradient accumulation"),
    "scaled logits": (_logit_scaling, "logits_scaling"),
}


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_the_predicate_and_the_path_taken_agree(name, yoda, tmp_path, paths):
    build, reason = CONFIGURATIONS[name]
    trainer, batch = build(tmp_path, yoda)
    batch = _batch(trainer, (0, 1)) if batch is None else batch
    blockers = training.scored_head_blockers(trainer, inputs=batch)
    if reason is None:
        assert blockers == []
    else:
        assert len(blockers) == 1 and reason in blockers[0], blockers
    fast = training.uses_scored_head(trainer, inputs=batch)
    assert fast is (reason is None)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.isfinite(loss)
    assert paths == {"scored": int(fast), "trl": int(not fast)}


def test_asking_for_the_outputs_takes_trls_path(yoda, tmp_path, paths):
    trainer = _trainer(tmp_path, yoda)
    blockers = training.scored_head_blockers(trainer, return_outputs=True)
    assert blockers == ["the caller asks for the logits (return_outputs=True)"]
    with pytest.warns(FutureWarning, match="return_outputs"):
        loss, outputs = trainer.compute_loss(trainer.model, _batch(trainer, (0, 1)), True)
    assert outputs.logits.shape[-1] == 49152 and paths == {"scored": 0, "trl": 1}


def test_a_ddp_wrapper_and_unknown_models_are_named_as_reasons(yoda, tmp_path):
    """Under DDP the wrapper's forward synchronises gradients: the scored loss must not skip it."""
    from torch.nn.parallel import DistributedDataParallel

    trainer = _trainer(tmp_path, yoda)
    wrapper = DistributedDataParallel.__new__(DistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = trainer.model
    assert "DistributedDataParallel" in " ".join(training.scored_head_blockers(trainer, wrapper))
    assert not training.uses_scored_head(trainer, wrapper)
    causal_lm = trainer.model.get_base_model()
    causal_lm.config.model_type = "granite"
    assert training.scored_head_blockers(trainer) == [
        f"model type 'granite' is not one of {training.SCORED_HEAD_MODEL_TYPES}"
    ]
    assert training.scored_head_blockers(trainer, torch.nn.Linear(2, 2)) == [
        "Linear is not a transformers model"
    ]


def test_importing_the_trainer_module_does_not_import_trl():
    code = (
        "import sys, helpers.training as t; "
        "print(sorted(m for m in ('trl', 'transformers', 'peft') if m in sys.modules)); "
        "print(t.CourseSFTTrainer.__module__, 'trl' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "helpers.training True"]


def test_a_plain_transformers_trainer_is_named_not_crashed_on(tmp_path):
    from transformers import Trainer, TrainingArguments

    model, _ = helpers.load_model("tiny-random-smollm2", device="cpu")
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")
    trainer = Trainer(model=model, args=args)
    assert not training.uses_scored_head(trainer)
    assert training.scored_head_blockers(trainer) == [
        "Trainer is not the course's trainer (helpers.build_trainer)"
    ]
