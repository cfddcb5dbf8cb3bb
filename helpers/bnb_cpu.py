"""A bitsandbytes trap on CPUs with AVX512-BF16, and the switch that avoids it.

bitsandbytes 0.50 repacks a 4-bit layer's weights into a faster inference layout the
first time the layer runs on such a CPU in eval mode without gradients (generating
answers does exactly that). Its matmul on the repacked layout has no backward pass, so
LoRA training after that gets wrong gradients, silently: on this project's machine the
chapter 00 recipe then diverged (exact match 0/100 instead of 80+). Switching the
repacking off keeps the trainable layout; CPUs without AVX512-BF16 never repack.
"""

from __future__ import annotations


def keep_trainable_layout(model):
    """Stop bitsandbytes' 4-bit layers from repacking their weights for CPU inference.

    Call it right after loading a 4-bit model that will be trained; it returns the model.
    Layers that were already repacked are left as they are (reload the model instead).
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def repacked_layers(model) -> int:
    """How many 4-bit layers hold the repacked (inference-only) CPU layout."""
    count = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            count += 1
    return count
