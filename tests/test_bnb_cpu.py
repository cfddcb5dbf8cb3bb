"""helpers.bnb_cpu: 4-bit layers keep a layout that can be trained through."""

from __future__ import annotations

import pytest
import torch
from bitsandbytes.functional import has_avx512bf16

import helpers
from helpers.bnb_cpu import keep_trainable_layout, repacked_layers


def _tiny_4bit():
    return helpers.load_model("tiny-random-smollm2", quantization="4bit", device="cpu")


def _plain_4bit():
    """As a plain ``from_pretrained`` leaves it: repacking allowed (load_model switches it off)."""
    model, tokenizer = _tiny_4bit()
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = has_avx512bf16()
    return model, tokenizer


def _generate_once(model, tokenizer):
    """What generating does to the layers: an eval-mode forward without gradients."""
    inputs = tokenizer(["The captain has found the map."], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        model(**inputs)
    return inputs


def test_kept_layout_is_never_repacked_and_passes_gradients():
    model, tokenizer = _tiny_4bit()
    assert keep_trainable_layout(model) is model
    inputs = _generate_once(model, tokenizer)
    assert repacked_layers(model) == 0
    hidden = model.model.embed_tokens(inputs["input_ids"]).detach().requires_grad_(True)
    layer = model.model.layers[0].self_attn.q_proj
    layer(hidden).float().sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


@pytest.mark.skipif(not has_avx512bf16(), reason="only CPUs with AVX512-BF16 repack 4-bit weights")
def test_without_it_generation_repacks_the_weights_and_cuts_the_gradient():
    model, tokenizer = _plain_4bit()
    layer = model.model.layers[0].self_attn.q_proj
    hidden = torch.randn(1, 3, model.config.hidden_size, requires_grad=True)
    layer(hidden).float().sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0  # before: trainable
    hidden.grad = None
    _generate_once(model, tokenizer)
    assert repacked_layers(model) == 2 * 7  # every linear layer of both blocks
    with pytest.warns(UserWarning, match="gemv_4bit"):
        layer(hidden).float().sum().backward()
    assert hidden.grad is None  # the repacked matmul has no backward pass: no error, no gradient


def test_load_model_keeps_the_trainable_layout_through_generation():
    model, tokenizer = _tiny_4bit()
    _generate_once(model, tokenizer)
    assert repacked_layers(model) == 0


@pytest.mark.skipif(not has_avx512bf16(), reason="only CPUs with AVX512-BF16 repack 4-bit weights")
def test_build_trainer_refuses_a_repacked_model_and_names_the_fix(yoda):
    model, tokenizer = _plain_4bit()
    _generate_once(model, tokenizer)
    with pytest.raises(ValueError, match="keep_trainable_layout"):
        helpers.build_trainer(
            model, tokenizer, yoda["train"].select(range(4)), peft_config=helpers.lora_config(r=4)
        )
