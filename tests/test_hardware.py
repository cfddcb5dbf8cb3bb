"""Where the course loads and trains a model, with the hardware detection mocked.

Three machines: an Apple-silicon Mac (MPS, bitsandbytes runs on the CPU only), a
machine with an NVIDIA GPU, and a CPU-only machine like this project's.
"""

from __future__ import annotations

import pytest
import torch

import helpers
from helpers import hardware, models


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine: its best device, and whether CUDA is there for bitsandbytes."""
    monkeypatch.setattr(hardware, "_said", set())  # each test starts with nothing said yet
    # import the libraries first: bitsandbytes must not see a pretended CUDA at import time
    import bitsandbytes  # noqa: F401
    import trl  # noqa: F401

    def pretend(best: str, *, bnb_installed: bool = True) -> None:
        monkeypatch.setattr(hardware, "device_name", lambda: best)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: best == "cuda")
        monkeypatch.setattr(hardware, "bitsandbytes_available", lambda: bnb_installed)

    return pretend


def test_a_mac_trains_quantized_models_on_the_cpu_and_says_so_once(machine, capsys):
    machine("mps")
    assert hardware.bitsandbytes_devices() == ("cpu",)
    assert hardware.training_device() == "mps"
    assert capsys.readouterr().out == ""
    assert hardware.training_device("4bit") == "cpu"
    assert hardware.training_device("4bit") == "cpu"
    assert hardware.training_device("8bit") == "cpu"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "4bit" in lines[0] and "8bit" in lines[1]
    assert "on the CPU" in lines[0] and "MPS" in lines[0]
    assert helpers.sft_config("unused", quantization="4bit").use_cpu
    assert not helpers.sft_config("unused").use_cpu  # full precision trains on the Apple GPU


def test_a_mac_loads_a_4bit_model_on_the_cpu_and_trains_it_there(machine, capsys, yoda, tmp_path):
    """Chapter 00's calls, unchanged: load_model(4bit), sft_config(...), build_trainer(...)."""
    machine("mps")
    model, tokenizer = helpers.load_model("tiny-random-smollm2", quantization="4bit")
    assert models.is_quantized(model)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    args = helpers.sft_config(str(tmp_path), max_steps=1, per_device_train_batch_size=2)
    assert not args.use_cpu  # built without the quantization: the trainer corrects it
    trainer = helpers.build_trainer(
        model,
        tokenizer,
        yoda["train"].select(range(4)),
        args,
        peft_config=helpers.lora_config(r=2),
    )
    assert trainer.args.use_cpu and trainer.args.bf16 == hardware.bf16_native("cpu")
    assert trainer.args.max_steps == 1 and trainer.args.per_device_train_batch_size == 2
    assert capsys.readouterr().out.count("on the CPU") == 1


def test_a_mac_without_bitsandbytes_keeps_its_gpu_and_loading_says_what_is_missing(machine):
    machine("mps", bnb_installed=False)
    assert hardware.bitsandbytes_devices() == ()
    assert hardware.training_device("4bit") == "mps"
    with pytest.raises(RuntimeError, match="needs bitsandbytes"):
        models.quantization_config("4bit", hardware.training_device("4bit"))


def test_a_cuda_machine_quantizes_on_its_gpu_without_a_word(machine, capsys):
    machine("cuda")
    assert hardware.bitsandbytes_devices() == ("cuda", "cpu")
    for quantization in models.QUANTIZATIONS:
        assert hardware.training_device(quantization) == "cuda"
    assert capsys.readouterr().out == ""


def test_a_cpu_only_machine_uses_the_cpu_and_chapter_00s_config_is_unchanged(machine, capsys):
    machine("cpu")
    assert hardware.bitsandbytes_devices() == ("cpu",)
    for quantization in models.QUANTIZATIONS:
        assert hardware.training_device(quantization) == "cpu"
    chapter_00 = {"max_steps": 90, "per_device_train_batch_size": 4, "learning_rate": 2e-3}
    default = helpers.sft_config("outputs/00_tldr", **chapter_00)
    explicit = helpers.sft_config("outputs/00_tldr", device="cpu", **chapter_00)
    quantized = helpers.sft_config("outputs/00_tldr", quantization="4bit", **chapter_00)
    assert default.use_cpu and default.to_dict() == explicit.to_dict() == quantized.to_dict()
    assert capsys.readouterr().out == ""


def test_an_unknown_quantization_is_refused_before_any_device_is_chosen(machine, capsys):
    machine("mps")
    with pytest.raises(ValueError, match="'3bit' is not one of"):
        helpers.sft_config("unused", quantization="3bit")
    with pytest.raises(ValueError, match="'3bit' is not one of"):
        helpers.load_model("tiny-random-smollm2", quantization="3bit")
    assert capsys.readouterr().out == ""
