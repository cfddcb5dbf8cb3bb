"""The chapter-11 round trip as a picture: which files each stack reads and writes.

The Hugging Face checkpoint goes into LitGPT's format (one ``lit_model.pth`` and a
``model_config.yaml``), LitGPT trains LoRA on it and merges the adapter, and the merged
weights come back as a ``model.pth`` that transformers loads into the same model class.
"""

from __future__ import annotations

from . import canvas

STEPS = [
    ("HF checkpoint\nmodel.safetensors\nconfig.json, tokenizer", canvas.FROZEN),
    ("litgpt\nconvert_to_litgpt", canvas.COMPUTE),
    ("LitGPT checkpoint\nlit_model.pth\nmodel_config.yaml", canvas.FROZEN),
    ("litgpt finetune_lora\n(merges at the end)", canvas.COMPUTE),
    ("fine-tuned\nlit_model.pth\n(+ lit_model.pth.lora)", canvas.TRAINED),
    ("litgpt\nconvert_from_litgpt", canvas.COMPUTE),
    ("model.pth\n→ transformers\nload_state_dict", canvas.TRAINED),
]


def round_trip(steps: list[tuple[str, str]] | None = None):
    """Boxes from left to right, one per file set or command, joined by arrows."""
    import matplotlib.pyplot as plt

    steps = steps or STEPS
    width, gap, height = 2.6, 0.55, 1.6
    fig, ax = plt.subplots(figsize=(13, 2.6))
    canvas.blank_axes(ax, len(steps) * (width + gap), 2.6, equal=False)
    for i, (text, color) in enumerate(steps):
        x = i * (width + gap) + gap / 2
        canvas.box(ax, x, 0.5, width, height, text, color, fontsize=8.5)
        if i:
            canvas.arrow(ax, (x - gap, 0.5 + height / 2), (x, 0.5 + height / 2))
    canvas.legend(
        ax,
        {
            "files": canvas.FROZEN,
            "litgpt command": canvas.COMPUTE,
            "trained weights": canvas.TRAINED,
        },
        loc="upper center",
        ncol=3,
        bbox_to_anchor=(0.5, 1.08),
    )
    ax.set_title("Chapter 11: Hugging Face → LitGPT → Hugging Face", fontsize=10, pad=16)
    return fig
