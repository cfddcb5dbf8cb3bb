"""LoRA pictures: the two small matrices beside a frozen weight, and where adapters sit.

``lora_matrices`` draws one adapted layer to scale: ``W`` (``d_out x d_in``, frozen),
``A`` (``r x d_in``) and ``B`` (``d_out x r``), with their shapes and parameter counts.
``decoder_block`` draws a SmolLM2 (Llama) decoder block and colours the linear layers a
``target_modules`` choice adapts; the embedding and the output layer (``lm_head``) are
never adapted by "all-linear".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..lora import ATTENTION, MLP
from ..numbers import SMOLLM2_135M_CONFIG
from . import canvas

SMOLLM2_Q_PROJ = (576, 576)
"""(d_in, d_out) of SmolLM2-135M's q_proj."""


def lora_matrices(d_in: int = 576, d_out: int = 576, r: int = 8, name: str = "q_proj"):
    """One linear layer with LoRA, to scale: frozen W beside B and A, shapes and counts."""
    import matplotlib.pyplot as plt

    if min(d_in, d_out, r) < 1 or r > min(d_in, d_out):
        raise ValueError(
            f"r={r} must be between 1 and min(d_in, d_out)={min(d_in, d_out)}, "
            f"and d_in={d_in}, d_out={d_out} positive."
        )
    unit = 4.0 / max(d_in, d_out)  # drawing units per row/column: the big matrix is 4 wide
    thin = max(r * unit, 0.12)  # keep a rank-1 matrix visible
    w_width, w_height = d_in * unit, d_out * unit
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width, height = 2 * w_width + thin + 4.2, w_height + 1.6
    canvas.blank_axes(ax, width, height)
    base = 0.6
    canvas.box(ax, 0.2, base, w_width, w_height, "", canvas.FROZEN, rounded=False)
    ax.text(0.2 + w_width / 2, base + w_height / 2 + 0.25, "W  (frozen)", ha="center", fontsize=12)
    ax.text(
        0.2 + w_width / 2,
        base + w_height / 2 - 0.25,
        f"{d_out} x {d_in}\n{d_in * d_out:,} parameters",
        ha="center",
        va="top",
        fontsize=10,
    )
    plus_x = 0.2 + w_width + 0.55
    ax.text(plus_x, base + w_height / 2, "+  α/r ·", ha="center", va="center", fontsize=13)
    b_x = plus_x + 0.65
    canvas.box(ax, b_x, base, thin, w_height, "", canvas.TRAINED, rounded=False)
    ax.text(b_x + thin / 2, base + w_height + 0.12, f"B\n{d_out} x {r}", ha="center", fontsize=10)
    a_x = b_x + thin + 0.35
    a_y = base + w_height - thin
    canvas.box(ax, a_x, a_y, d_in * unit, thin, "", canvas.TRAINED, rounded=False)
    ax.text(
        a_x + d_in * unit / 2, a_y - 0.12, f"A\n{r} x {d_in}", ha="center", va="top", fontsize=10
    )
    trainable = r * (d_in + d_out)
    ax.text(
        a_x + d_in * unit / 2,
        base + 0.35,
        f"trainable: {r} x ({d_in} + {d_out}) = {trainable:,}\n"
        f"{100 * trainable / (d_in * d_out):.2f}% of W",
        ha="center",
        fontsize=10,
    )
    ax.set_title(f"{name} with LoRA r={r}:  y = W x + (α/r) B (A x)", fontsize=12)
    fig.tight_layout()
    return fig


def _adapted(target_modules: str | Sequence[str]) -> set[str]:
    if isinstance(target_modules, str):
        if target_modules != "all-linear":
            raise ValueError(
                f"target_modules={target_modules!r}: give a list of projection names "
                "or 'all-linear'."
            )
        return set(ATTENTION + MLP)
    unknown = sorted(set(target_modules) - set(ATTENTION + MLP))
    if unknown:
        raise ValueError(f"{unknown} are not linear layers of a Llama block: {ATTENTION + MLP}")
    return set(target_modules)


def _get(config: Mapping | Any, key: str):
    return config[key] if isinstance(config, Mapping) else getattr(config, key)


def decoder_block(config: Mapping | Any | None = None, target_modules="all-linear", r: int = 16):
    """A Llama decoder block with the layers `target_modules` adapts coloured, shapes from `config`.

    `config` is a model config or a mapping with SmolLM2's keys (``numbers.SMOLLM2_135M_CONFIG``
    by default). The embedding and lm_head are drawn outside the repeated block, never adapted.
    """
    import matplotlib.pyplot as plt

    if config is None:
        config = SMOLLM2_135M_CONFIG
    adapted = _adapted(target_modules)
    hidden, inter = _get(config, "hidden_size"), _get(config, "intermediate_size")
    heads, kv_heads = _get(config, "num_attention_heads"), _get(config, "num_key_value_heads")
    head_dim = hidden // heads
    try:
        head_dim = _get(config, "head_dim") or head_dim
    except (KeyError, AttributeError):
        pass
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    layers, vocab = _get(config, "num_hidden_layers"), _get(config, "vocab_size")

    fig, ax = plt.subplots(figsize=(8, 9.5))
    canvas.blank_axes(ax, 10, 15.2, equal=False)

    def linear(name, x, y, w=2.6):
        d_in, d_out = shapes[name]
        on = name in adapted
        label = f"{name}\n{d_in} → {d_out}" + (f"\n+ LoRA r={r}" if on else "")
        canvas.box(ax, x, y, w, 1.15, label, canvas.TRAINED if on else canvas.FROZEN, fontsize=8)

    canvas.box(ax, 3.2, 0.2, 3.6, 0.8, f"embed_tokens  {vocab:,} x {hidden}", fontsize=8)
    canvas.arrow(ax, (5, 1.0), (5, 1.5))
    # the repeated block
    ax.add_patch(
        plt.Rectangle((0.15, 1.5), 9.7, 11.1, fill=False, linestyle="--", edgecolor="gray")
    )
    ax.text(
        9.75, 12.4, f"decoder block  x {layers}", ha="right", va="top", fontsize=9, color="dimgray"
    )
    canvas.box(ax, 3.2, 1.9, 3.6, 0.6, "input_layernorm (RMSNorm)", fontsize=8)
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        linear(name, 0.5 + 3.1 * i, 2.9)
        canvas.arrow(ax, (5, 2.5), (1.8 + 3.1 * i, 2.9))
    canvas.box(
        ax,
        2.6,
        4.55,
        4.8,
        0.7,
        f"attention: {heads} query heads, {kv_heads} key/value heads",
        canvas.COMPUTE,
        fontsize=8,
    )
    for i in range(3):
        canvas.arrow(ax, (1.8 + 3.1 * i, 4.05), (5, 4.55))
    linear("o_proj", 3.7, 5.6)
    canvas.arrow(ax, (5, 5.25), (5, 5.6))
    ax.text(5, 7.05, "+ residual", ha="center", fontsize=8)
    canvas.arrow(ax, (5, 6.75), (5, 7.4))
    canvas.box(ax, 3.2, 7.4, 3.6, 0.6, "post_attention_layernorm (RMSNorm)", fontsize=8)
    for i, name in enumerate(("gate_proj", "up_proj")):
        linear(name, 1.7 + 3.6 * i, 8.4)
        canvas.arrow(ax, (5, 8.0), (3.0 + 3.6 * i, 8.4))
    canvas.box(ax, 3.4, 9.95, 3.2, 0.6, "SiLU(gate) x up", canvas.COMPUTE, fontsize=8)
    for i in range(2):
        canvas.arrow(ax, (3.0 + 3.6 * i, 9.55), (5, 9.95))
    linear("down_proj", 3.7, 10.9)
    canvas.arrow(ax, (5, 10.55), (5, 10.9))
    ax.text(5, 12.25, "+ residual", ha="center", fontsize=8)
    canvas.arrow(ax, (5, 12.05), (5, 12.9))
    canvas.box(ax, 3.2, 12.9, 3.6, 0.6, "norm (RMSNorm)", fontsize=8)
    canvas.arrow(ax, (5, 13.5), (5, 13.9))
    tied = _get(config, "tie_word_embeddings")
    canvas.box(
        ax,
        2.7,
        13.9,
        4.6,
        0.9,
        f"lm_head  {hidden} → {vocab:,}\nnot adapted" + (" (shares embed_tokens)" if tied else ""),
        fontsize=8,
    )
    count = sum(r * (a + b) for name, (a, b) in shapes.items() if name in adapted) * layers
    ax.set_title(
        f"Where LoRA sits: {len(adapted)} of 7 linear layers per block adapted, "
        f"{count:,} trainable parameters at r={r}",
        fontsize=10,
    )
    canvas.legend(
        ax,
        {
            "frozen + LoRA (A, B train)": canvas.TRAINED,
            "frozen, not adapted": canvas.FROZEN,
            "no weights of its own": canvas.COMPUTE,
        },
        loc="lower left",
    )
    fig.tight_layout()
    return fig
