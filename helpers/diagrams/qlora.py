"""The QLoRA data flow through one adapted linear layer, as a picture.

4-bit NF4 codes and their block scales are what is stored; each forward pass
de-quantizes the weight block by block into the compute dtype, multiplies, and adds
the LoRA branch, whose A and B are the only tensors that train. Gradients flow back
through the de-quantized weight into A and B; the 4-bit codes are never updated.
"""

from __future__ import annotations

from . import canvas


def qlora_flow(
    compute_dtype: str = "bf16",
    adapter_dtype: str = "fp32",
    blocksize: int = 64,
    double_quant: bool = True,
    shape: tuple[int, int] = (576, 576),
    r: int = 16,
):
    """One QLoRA layer: stored 4-bit weight -> de-quantize per block -> compute dtype -> + LoRA.

    `shape` is (d_in, d_out) of the layer (SmolLM2's q_proj by default); `compute_dtype`
    is bitsandbytes' ``bnb_4bit_compute_dtype`` and `adapter_dtype` the dtype of A and B.
    """
    import matplotlib.pyplot as plt

    d_in, d_out = shape
    blocks = d_in * d_out // blocksize
    fig, ax = plt.subplots(figsize=(11, 4.6))
    canvas.blank_axes(ax, 22, 9.2, equal=False)

    scales = (
        f"{blocks:,} block scales in 8 bits\n(+ fp32 scales of the scales)"
        if double_quant
        else f"{blocks:,} block scales in fp32"
    )
    canvas.box(
        ax,
        0.2,
        5.2,
        4.6,
        2.6,
        f"stored: NF4 codes\n{d_out} x {d_in}, 4 bits each\n(2 codes per uint8 byte)\n\n{scales}",
        canvas.QUANTIZED,
        fontsize=8,
    )
    canvas.arrow(ax, (4.8, 6.5), (5.8, 6.5))
    canvas.box(
        ax,
        5.8,
        5.5,
        4.2,
        2.0,
        f"de-quantize block by block\nlevel[code] x absmax\n(blocks of {blocksize})",
        canvas.COMPUTE,
        fontsize=8,
    )
    canvas.arrow(ax, (10.0, 6.5), (11.0, 6.5))
    canvas.box(
        ax,
        11.0,
        5.5,
        3.6,
        2.0,
        f"W in {compute_dtype}\n(temporary, frozen)",
        canvas.FROZEN,
        fontsize=8,
    )
    canvas.arrow(ax, (14.6, 6.5), (15.6, 6.5))
    canvas.box(ax, 15.6, 5.6, 2.4, 1.8, "W x", canvas.COMPUTE, fontsize=9)

    # input and LoRA branch
    canvas.box(ax, 0.2, 1.2, 2.6, 1.6, f"x\n({compute_dtype} activations)", fontsize=8)
    canvas.arrow(ax, (2.8, 2.4), (15.6, 6.0), color="gray")
    canvas.arrow(ax, (2.8, 2.0), (6.4, 2.0))
    canvas.box(
        ax,
        6.4,
        1.0,
        3.6,
        2.0,
        f"A  {r} x {d_in}\n{adapter_dtype}, trains",
        canvas.TRAINED,
        fontsize=8,
    )
    canvas.arrow(ax, (10.0, 2.0), (11.0, 2.0))
    canvas.box(
        ax,
        11.0,
        1.0,
        3.6,
        2.0,
        f"B  {d_out} x {r}\n{adapter_dtype}, trains",
        canvas.TRAINED,
        fontsize=8,
    )
    canvas.arrow(ax, (14.6, 2.0), (15.6, 2.0))
    canvas.box(ax, 15.6, 1.1, 2.4, 1.8, "(α/r) B A x", canvas.COMPUTE, fontsize=9)
    canvas.arrow(ax, (18.0, 6.5), (19.4, 4.6))
    canvas.arrow(ax, (18.0, 2.0), (19.4, 3.8))
    canvas.box(ax, 19.4, 3.3, 2.4, 1.8, "y = sum", canvas.COMPUTE, fontsize=9)

    # gradients
    canvas.arrow(ax, (19.6, 3.2), (12.8, 3.2), color="tab:red", linestyle="--")
    ax.text(
        16.2,
        3.55,
        "gradients reach A and B only",
        color="tab:red",
        fontsize=8,
        ha="center",
    )
    ax.text(
        2.5,
        7.95,
        "never updated: not floating-point numbers",
        color="tab:red",
        fontsize=8,
        ha="center",
    )
    ax.set_title(
        f"QLoRA, one layer: 4-bit storage → de-quantize per block → {compute_dtype} compute"
        f" → + LoRA in {adapter_dtype}",
        fontsize=10,
    )
    canvas.legend(
        ax,
        {
            "stored in 4 bits": canvas.QUANTIZED,
            "frozen": canvas.FROZEN,
            "trains": canvas.TRAINED,
            "computed each pass": canvas.COMPUTE,
        },
        loc="upper right",
        ncol=2,
    )
    fig.tight_layout()
    return fig
