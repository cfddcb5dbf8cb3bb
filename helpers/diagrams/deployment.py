"""Chapter 08's map: the three exits of a fine-tuned adapter and the runtimes behind each."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .canvas import COMPUTE, FROZEN, QUANTIZED, TRAINED, arrow, blank_axes, box, legend

EXITS = (
    ("safetensors\n(merged checkpoint)", "transformers, vLLM, TGI,\nthe chapter's HTTP server"),
    ("GGUF F16 / Q8_0\n+ tokenizer, template, EOS", "llama.cpp, Ollama,\nLM Studio"),
    ("ONNX fp32 / int8\n+ KV cache inputs", "onnxruntime (CPU, mobile,\nbrowser)"),
)


def plot_exits():
    """Base + adapter → merged weights → three files → the runtimes that read them."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    blank_axes(ax, 10, 3.6)
    box(ax, 0.1, 2.3, 1.5, 0.8, "fp32 base", FROZEN)
    box(ax, 0.1, 0.9, 1.5, 0.8, "LoRA adapter\n(chapter 00)", TRAINED)
    box(ax, 2.3, 1.6, 1.7, 0.8, "merge_and_unload\nW + (α/r)·B·A", COMPUTE)
    arrow(ax, (1.6, 2.7), (2.3, 2.1))
    arrow(ax, (1.6, 1.3), (2.3, 1.9))
    for i, (file, runtime) in enumerate(EXITS):
        y = 2.7 - i * 1.1
        box(ax, 4.8, y, 2.3, 0.8, file, QUANTIZED if i else FROZEN, fontsize=8)
        box(ax, 7.6, y, 2.3, 0.8, runtime, COMPUTE, fontsize=8)
        arrow(ax, (4.0, 2.0), (4.8, y + 0.4))
        arrow(ax, (7.1, y + 0.4), (7.6, y + 0.4))
    legend(
        ax,
        {"weights": FROZEN, "trained": TRAINED, "exported file": QUANTIZED, "code": COMPUTE},
        loc="lower left",
        bbox_to_anchor=(0.0, -0.08),
        ncol=4,
    )
    ax.set_title("three ways out of the notebook", fontsize=10)
    return fig
