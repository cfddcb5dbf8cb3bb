"""helpers.settings: the fields of a config that differ from the defaults, with reasons."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig

import helpers
from helpers import hardware, models, settings

# What chapter 00 passes to sft_config (its own choices), and the reason it gives for one.
CHAPTER_00 = dict(
    max_steps=90,
    per_device_train_batch_size=4,
    learning_rate=2e-3,
    eval_strategy="steps",
    eval_steps=15,
    eval_on_start=True,
    per_device_eval_batch_size=20,
)
CHAPTER_00_REASONS = {"per_device_eval_batch_size": "the 20 eval examples in one batch"}


def _names(rows):
    return [row.name for row in rows]


def test_a_changed_field_is_listed_with_its_value_default_and_reason():
    rows = settings.non_defaults(LoraConfig(r=32))
    (row,) = [row for row in rows if row.name == "r"]
    assert (row.value, row.default) == (32, 8)
    assert row.reason == settings.REASONS["LoraConfig"]["r"] and row.has_reason
    table = settings.settings_table(LoraConfig(r=32))
    assert "r = 32" in table and "peft's default: 8" in table
    assert settings.REASONS["LoraConfig"]["r"] in table


def test_a_field_left_at_its_default_is_not_listed():
    assert settings.non_defaults(LoraConfig()) == []
    assert "r" not in _names(settings.non_defaults(LoraConfig(r=8, lora_alpha=16)))
    assert settings.settings_table(LoraConfig()).startswith("LoraConfig: 0 fields differ")


def test_a_changed_field_without_a_reason_is_flagged():
    config = LoraConfig(use_rslora=True)
    (row,) = settings.non_defaults(config)
    assert row.name == "use_rslora" and not row.has_reason
    assert settings.missing_reasons(config) == ["use_rslora"]
    assert settings.MISSING_REASON in settings.settings_table(config)
    # a reason given for this call fills the gap
    assert settings.missing_reasons(config, reasons={"use_rslora": "scale by alpha/sqrt(r)"}) == []


@pytest.mark.parametrize("bf16_native", [True, False])
def test_every_field_the_course_changes_has_a_reason(monkeypatch, bf16_native):
    """The stale-reason guard: a builder or library default changes, this test names the field."""
    monkeypatch.setattr(hardware, "bf16_native", lambda device=None: bf16_native)
    monkeypatch.setattr(hardware, "bitsandbytes_available", lambda: True)
    for config in (
        helpers.sft_config("unused"),
        helpers.sft_config("unused", gradient_checkpointing=True, device="cpu"),
        helpers.lora_config(r=16),
        models.quantization_config("4bit", "cpu"),
        models.quantization_config("8bit", "cpu"),
    ):
        assert settings.missing_reasons(config) == [], type(config).__name__
    chapter = helpers.sft_config("outputs/00_tldr", **CHAPTER_00)
    assert settings.missing_reasons(chapter, reasons=CHAPTER_00_REASONS) == []


def test_what_sft_config_sets_can_be_read_off_the_table():
    args = helpers.sft_config("outputs/00_tldr", **CHAPTER_00)
    pinned = ("report_to", "fp16", "dataloader_num_workers")
    shown = _names(settings.non_defaults(args, also=pinned))
    for name in (
        "lr_scheduler_type",
        "warmup_steps",
        "max_length",
        "save_strategy",
        "activation_checkpointing",
        "seed",
        "data_seed",
        "logging_steps",
        "learning_rate",
        "max_steps",
        "eval_strategy",
        *pinned,
    ):
        assert name in shown, name
    assert "bf16" not in shown and "use_cpu" not in shown  # they have their own table
    table = settings.settings_table(args, also=pinned)
    assert "lr_scheduler_type = 'cosine'" in table and "trl's default: 'linear'" in table
    assert "report_to = []" in table and "(the same as trl's default)" in table
    assert "3 more pinned at the default" in table


def test_the_main_table_reads_the_same_on_every_machine(monkeypatch):
    """bf16, use_cpu and the 4-bit compute dtype live in the machine table only."""
    monkeypatch.setattr(hardware, "bitsandbytes_available", lambda: True)
    tables = {}
    for bf16_native, device in ((True, "cpu"), (False, "cpu"), (False, "cuda")):
        monkeypatch.setattr(hardware, "bf16_native", lambda device=None, v=bf16_native: v)
        args = helpers.sft_config("outputs/00_tldr", device=device, **CHAPTER_00)
        bnb = models.quantization_config("4bit", "cpu")
        tables[bf16_native, device] = settings.settings_table(args) + settings.settings_table(bnb)
        machine = settings.settings_table(args, machine=True)
        assert f"bf16 = {bf16_native}" in machine and f"use_cpu = {device == 'cpu'}" in machine
        dtype = "bfloat16" if bf16_native else "float32"
        assert f"bnb_4bit_compute_dtype = '{dtype}'" in settings.settings_table(bnb, machine=True)
    assert len(set(tables.values())) == 1


def test_a_quantization_config_is_compared_field_by_field():
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    rows = {row.name: row for row in settings.non_defaults(config)}
    assert set(rows) == {"load_in_4bit", "bnb_4bit_quant_type"}
    assert rows["bnb_4bit_quant_type"].default == "fp4"
    (machine,) = settings.non_defaults(config, machine=True)
    assert machine.name == "bnb_4bit_compute_dtype" and machine.default == "float32"
    assert "transformers' default" in settings.settings_table(config)


def test_misuse_is_named():
    with pytest.raises(TypeError, match="not a config this helper can read"):
        settings.non_defaults(object())
    with pytest.raises(ValueError, match=r"no field\(s\) \['rank'\]"):
        settings.non_defaults(LoraConfig(), also=["rank"])
