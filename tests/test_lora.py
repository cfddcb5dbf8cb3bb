"""helpers.lora: LoRA from scratch, parameter counts, QLoRA preparation, adapter management.

Everything runs on the 2-layer random model (fresh copies: LoRA freezes and wraps layers).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import helpers
from helpers import hardware, lora, numbers


def fresh_tiny(**kwargs):
    return helpers.load_model("tiny-random-smollm2", device="cpu", **kwargs)


@pytest.fixture
def tiny_fresh():
    return fresh_tiny()


@pytest.fixture
def batch(tiny_fresh):
    _, tokenizer = tiny_fresh
    return tokenizer(["The captain has found the map.", "Hello"], return_tensors="pt", padding=True)


def _layer(model):
    return model.model.layers[0].self_attn.q_proj


# --- LoRA from scratch --------------------------------------------------------------------


def test_a_new_lora_layer_computes_exactly_what_the_base_layer_did(tiny_fresh):
    model, _ = tiny_fresh
    base = _layer(model)
    layer = lora.LoRALinear(base, r=4)
    x = torch.randn(5, base.in_features, generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    assert (layer.alpha, layer.scaling) == (8.0, 2.0)  # alpha defaults to 2r
    assert lora.LoRALinear(torch.nn.Linear(16, 16), r=4, alpha=2).scaling == 0.5


def test_only_a_and_b_are_trainable_and_they_are_small(tiny_fresh):
    model, _ = tiny_fresh
    base = _layer(model)
    layer = lora.LoRALinear(base, r=4)
    assert not any(p.requires_grad for p in base.parameters())
    assert lora.trainable_parameters(layer) == 4 * (base.in_features + base.out_features)
    assert {n for n, p in layer.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}


def test_training_moves_only_a_and_b_and_a_waits_for_b():
    torch.manual_seed(0)
    base = torch.nn.Linear(32, 24, bias=False)
    layer = lora.LoRALinear(base, r=2)
    weight, a0 = base.weight.detach().clone(), layer.lora_A.detach().clone()
    x = torch.randn(64, 32)
    target = x @ (base.weight + 0.1 * torch.randn(24, 1) @ torch.randn(1, 32)).T
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=1e-2)
    losses = []
    for step in range(40):
        loss = torch.nn.functional.mse_loss(layer(x), target.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step == 0:  # B was zero, so A's gradient was zero: only B moved
            assert torch.equal(layer.lora_A, a0)
            assert torch.count_nonzero(layer.lora_B) > 0
    assert torch.equal(base.weight, weight)
    assert not torch.equal(layer.lora_A, a0)
    assert losses[-1] < 0.2 * losses[0]


def test_the_merged_weight_computes_the_same_and_has_rank_r():
    torch.manual_seed(0)
    base = torch.nn.Linear(20, 30, bias=False)
    layer = lora.LoRALinear(base, r=3)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(7, 20)
    assert torch.linalg.matrix_rank(layer.delta_weight()) == 3
    merged = torch.nn.functional.linear(x, layer.merged_weight())
    torch.testing.assert_close(merged, layer(x), rtol=1e-5, atol=1e-5)


def test_peft_computes_the_same_with_the_same_a_b_and_scaling(tiny_fresh):
    model, _ = tiny_fresh
    layer = lora.LoRALinear(_layer(model), r=4, alpha=12)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 6, layer.base.in_features)
    peft_layer = lora.to_peft(layer)
    assert type(peft_layer).__module__.startswith("peft.")
    assert peft_layer.scaling["default"] == layer.scaling == 3.0
    assert not torch.allclose(layer(x), layer.base(x))  # the update is not zero
    torch.testing.assert_close(peft_layer(x), layer(x), rtol=1e-5, atol=1e-6)
    assert lora.max_abs_difference(peft_layer(x), layer(x)) < 1e-5


@pytest.mark.parametrize("r", [0, -1, 2.0, True, 65])
def test_a_bad_rank_is_refused(r, tiny_fresh):
    model, _ = tiny_fresh  # q_proj is 64 x 64
    with pytest.raises(ValueError, match=f"r={r!r}"):
        lora.LoRALinear(_layer(model), r=r)


# --- counting -----------------------------------------------------------------------------


def test_smollm2_counts_are_the_measured_ones():
    config = numbers.SMOLLM2_135M_CONFIG
    assert lora.lora_parameters(config, 8) == 2_442_240
    assert lora.lora_parameters(config, 8, ["q_proj", "v_proj"]) == 460_800
    assert lora.lora_parameters(config, 8, lora.ATTENTION) == 921_600
    shapes = lora.projection_shapes(config)
    assert shapes["k_proj"] == (576, 192) and shapes["down_proj"] == (1536, 576)


@pytest.mark.parametrize("choice", list(lora.TARGET_CHOICES))
@pytest.mark.parametrize("r", [1, 4])
def test_config_modules_and_peft_agree_on_the_count(choice, r, tiny_fresh):
    from peft import get_peft_model

    model, _ = tiny_fresh
    targets = lora.TARGET_CHOICES[choice]
    from_config = lora.lora_parameters(model.config, r, targets)
    from_modules = lora.count_lora_parameters(model, r, targets)
    peft_model = get_peft_model(model, helpers.lora_config(r=r, target_modules=targets))
    assert from_config == from_modules == peft_model.get_nb_trainable_parameters()[0]
    assert from_config == lora.trainable_parameters(peft_model)
    # counting on the wrapped model finds the same layers, not peft's lora_A/lora_B
    assert lora.count_lora_parameters(peft_model, r, targets) == from_modules
    assert lora.count_lora_layers(peft_model) == len(lora.adapted_linears(model, targets))
    assert lora.count_lora_layers(peft_model.unload()) == 0


def test_all_linear_leaves_out_the_lm_head(tiny_fresh):
    model, _ = tiny_fresh
    names = lora.adapted_linears(model)
    assert len(names) == 7 * model.config.num_hidden_layers
    assert not any("lm_head" in n for n in names)
    assert len(lora.adapted_linears(model, ["q_proj", "v_proj"])) == 2 * 2


def test_unknown_targets_are_refused():
    config = numbers.SMOLLM2_135M_CONFIG
    with pytest.raises(ValueError, match="all-linear"):
        lora.lora_parameters(config, 8, "everything")
    with pytest.raises(ValueError, match="qproj"):
        lora.lora_parameters(config, 8, ["qproj"])


def test_the_rank_plot_has_one_line_per_choice():
    import matplotlib

    matplotlib.use("Agg")
    fig = lora.plot_rank_vs_parameters(numbers.SMOLLM2_135M_CONFIG, 134_515_008)
    lines = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert len(lines) == len(lora.TARGET_CHOICES)
    assert list(lines[-1].get_ydata())[3] == 2_442_240  # all linear, r=8


# --- QLoRA --------------------------------------------------------------------------------

needs_bnb = pytest.mark.skipif(
    not hardware.bitsandbytes_available(), reason="bitsandbytes is not installed"
)


@needs_bnb
def test_prepare_for_kbit_training_and_qlora_train_only_the_adapters():
    from peft import get_peft_model

    model, tokenizer = fresh_tiny(quantization="4bit", dtype=torch.bfloat16)
    before = lora.kbit_facts(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for the learner to see
        model = lora.prepare_for_kbit_training(model)
    after = lora.kbit_facts(model)
    layers = model.config.num_hidden_layers
    assert before["4-bit weight tensors"] == after["4-bit weight tensors"] == 7 * layers
    assert before["16-bit tensors (bf16/fp16)"] > 0 and after["16-bit tensors (bf16/fp16)"] == 0
    assert after["fp32 tensors"] == before["16-bit tensors (bf16/fp16)"]
    assert before["trainable parameters"] > 0 and after["trainable parameters"] == 0
    assert (before["hook on the input embeddings"], after["hook on the input embeddings"]) == (
        False,
        True,
    )
    assert after["activation checkpointing"] and not before["activation checkpointing"]
    table = lora.facts_table(before, after)
    assert "trainable parameters" in table and "True" in table

    qlora = get_peft_model(model, helpers.lora_config(r=4))
    expected = lora.lora_parameters(model.config, 4)
    assert lora.trainable_parameters(qlora) == expected
    qlora.train()
    enc = tokenizer(["The captain has found the map."], return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = qlora(**enc, labels=enc["input_ids"], use_cache=False)
        out.loss.backward()
    with_grad = [n for n, p in qlora.named_parameters() if p.grad is not None]
    assert len(with_grad) == 2 * 7 * layers and all(".lora_" in n for n in with_grad)


# --- adapter management -------------------------------------------------------------------


def test_adapters_switch_disable_merge_and_unload(tiny_fresh, batch, tmp_path):
    from peft import get_peft_model

    model, _ = tiny_fresh
    base = lora.logits(model, batch)
    torch.manual_seed(1)
    config = helpers.lora_config(r=4, init_lora_weights=False)
    peft_model = get_peft_model(model, config, adapter_name="first")
    torch.manual_seed(2)
    peft_model.add_adapter("second", helpers.lora_config(r=4, init_lora_weights=False))
    peft_model.eval()
    first = lora.logits(peft_model, batch)
    peft_model.set_adapter("second")
    second = lora.logits(peft_model, batch)
    assert lora.max_abs_difference(first, base) > 1e-3
    assert lora.max_abs_difference(second, first) > 1e-3
    with peft_model.disable_adapter():
        assert torch.equal(lora.logits(peft_model, batch), base)
    peft_model.set_adapter("first")
    assert torch.equal(lora.logits(peft_model, batch), first)

    assert lora.count_lora_layers(peft_model) == 7 * 2
    merged = copy.deepcopy(peft_model).merge_and_unload()
    assert lora.count_lora_layers(merged) == 0
    assert lora.max_abs_difference(lora.logits(merged, batch), first) < 1e-4

    peft_model.save_pretrained(tmp_path, selected_adapters=["first"])
    unloaded = peft_model.unload()
    assert unloaded is model and torch.equal(lora.logits(unloaded, batch), base)
    reloaded = helpers.load_adapter(unloaded, str(tmp_path / "first"))
    assert lora.max_abs_difference(lora.logits(reloaded, batch), first) < 1e-6


def test_max_abs_difference_needs_equal_shapes():
    assert lora.max_abs_difference(torch.zeros(2), torch.tensor([0.0, -3.0])) == 3.0
    with pytest.raises(ValueError, match="shapes differ"):
        lora.max_abs_difference(torch.zeros(2), torch.zeros(3))
