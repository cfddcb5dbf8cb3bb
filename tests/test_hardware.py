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


@pytest.mark.parametrize(("best", "repacking_switched_off"), [("cuda", False), ("cpu", True)])
def test_4bit_loading_applies_the_cpu_workaround_on_the_cpu_only(
    machine, monkeypatch, best, repacking_switched_off
):
    """On a CUDA GPU, bitsandbytes' CUDA path as it is: the 4-bit config on the GPU, no switch."""
    import transformers

    machine(best)
    monkeypatch.setattr(hardware, "bf16_native", lambda device=None: device == "cuda")
    loaded = {}

    class FakeModel(torch.nn.Module):
        def to(self, *args, **kwargs):
            raise AssertionError("a quantized model is placed by device_map, never moved")

    def fake_model(path, **kwargs):
        loaded.update(kwargs)
        return FakeModel()

    class FakeTokenizer:
        pad_token = "<pad>"

    switched = []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda p: FakeTokenizer())
    monkeypatch.setattr(models, "keep_trainable_layout", lambda m: switched.append(m))
    monkeypatch.setattr(models, "_resolve", lambda name: "/nowhere/model")
    models.load_model("smollm2-135m", quantization="4bit")
    assert loaded["device_map"] == {"": 0 if best == "cuda" else "cpu"}
    config = loaded["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == (torch.bfloat16 if best == "cuda" else torch.float32)
    assert loaded["dtype"] == (torch.bfloat16 if best == "cuda" else torch.float32)
    assert bool(switched) == repacking_switched_off


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


# --- bf16: the course's rule and chapter 05's plain recipe agree -------------------------------

# name: (CUDA capability or None, the CPU's flags, what oneDNN says, torch.cpu's bf16 checks)
MACHINES = {
    "Colab T4 (7.5, bf16 emulated)": ((7, 5), {"avx2"}, False, False),
    "L4 (8.9)": ((8, 9), {"avx2"}, False, False),
    "A100 (8.0)": ((8, 0), {"avx2", "avx512f"}, True, False),
    "CPU with AVX512-BF16": (None, {"avx2", "avx512f", "avx512_bf16"}, True, True),
    "CPU with AVX-512, no bf16": (None, {"avx2", "avx512f"}, True, False),
    "CPU with AVX2 only": (None, {"avx2"}, False, False),
    "Apple silicon (its CPU)": (None, set(), False, False),
}
EXPECTED = {name: name.startswith(("L4", "A100", "CPU with AVX512-BF16")) for name in MACHINES}


def _plain_bf16_rule():
    """``bf16_pays`` as chapter 05's plain-recipe cell defines it (read from the notebook)."""
    import ast
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / "05_sfttrainer_and_memory.ipynb"
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if "plain-recipe" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            (rule,) = [
                n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "bf16_pays"
            ]
            namespace = {"torch": torch}
            exec(compile(ast.Module([rule], []), "plain-recipe", "exec"), namespace)
            return namespace["bf16_pays"]
    raise AssertionError("no cell tagged plain-recipe in chapter 05")


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_bf16_is_chosen_by_one_rule_in_the_course_and_the_plain_recipe(monkeypatch, name):
    capability, flags, onednn, cpu_bf16 = MACHINES[name]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # as on a T4
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    device = "cuda" if capability else "cpu"
    hardware.bf16_native.cache_clear()  # it remembers the real machine's answer
    try:
        assert hardware.bf16_native(device) is EXPECTED[name]
    finally:
        hardware.bf16_native.cache_clear()
    assert _plain_bf16_rule()() is EXPECTED[name]
    if name.startswith("Apple"):
        assert hardware.bf16_native.__wrapped__("mps") is False
