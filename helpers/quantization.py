"""Quantization by hand: the arithmetic that bitsandbytes does for us, small enough to read.

To quantize is to store each weight as a small integer *code* plus a few floating-point
numbers shared by many weights (a *scale*, sometimes a *zero point*). Restoring
(*dequantizing*) gives back a nearby value, not the original: the difference is the
quantization error. Chapter 02 writes the three schemes below, applies them to SmolLM2's
weight matrices, and checks them against torch and bitsandbytes.

- **absmax** (symmetric): ``code = round(x / scale)`` with ``scale = absmax / 127`` for 8 bits.
  Zero stays exactly zero; the range is symmetric around it.
- **zero-point** (asymmetric, affine): ``code = round(x / scale) + zero_point`` with
  ``scale = (max - min) / 255`` for 8 bits. Uses all 256 codes even when the values are
  lopsided; the formulas follow ``torch.ao.quantization``'s observers.
- **block-wise with a lookup table** (NF4, FP4): each block of 64 weights is divided by its
  own absmax into [-1, 1], and each result is replaced by the nearest of 16 *levels*; the
  code is the level's index (4 bits). NF4's levels are quantiles of a normal distribution.

Codes are returned in ``torch.int8`` (absmax, zero-point) or ``torch.uint8`` (block-wise
indices), one code per byte: real 4-bit formats pack two codes in a byte, which
``bits_per_parameter`` accounts for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SUPPORTED_BITS = tuple(range(2, 9))
"""Bit widths the hand-written integer quantizers accept (codes are stored in int8)."""

NF4_OFFSET = 0.5 * ((1 - 1 / (2 * 15)) + (1 - 1 / (2 * 16)))
"""The outermost probability NF4 keeps (about 0.9677): the quantile 1.0 would be infinite.

It is the mean of "half a bin from the end" for 15 bins and for 16 bins, the choice made
by the NF4 data type in bitsandbytes (0.9677083).
"""


# --- checks shared by every quantizer ------------------------------------------------------


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(
            f"bits={bits!r} is not supported: use an integer from {SUPPORTED_BITS[0]} to "
            f"{SUPPORTED_BITS[-1]} (the codes are stored in int8). 16-bit formats are "
            "floating point (fp16, bf16): use tensor.to(torch.bfloat16) for those."
        )
    return bits


def _check_float(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}.")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: there is nothing to quantize.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds inf or NaN, which no scale can represent.")
    return x


def _reduce(x: torch.Tensor, op, dim: int | None) -> torch.Tensor:
    """max/min over the whole tensor (dim=None) or along `dim`, kept for broadcasting."""
    if dim is None:
        return op(x)
    return op(x, dim=dim, keepdim=True)


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """The scale to divide by: 1 where it is 0 (an all-zero group), so 0 / 1 gives code 0."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


# --- absmax (symmetric) --------------------------------------------------------------------


def absmax_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization: ``(codes, scale)`` with ``codes = round(x / scale)``.

    ``scale = absmax / qmax`` where ``qmax = 2**(bits-1) - 1`` (127 for 8 bits), so the
    largest magnitude maps to ±qmax and 0 maps to 0. `dim=None` uses one scale for the
    whole tensor; ``dim=1`` on a weight matrix uses one scale per row (what bitsandbytes'
    8-bit layers do). An all-zero group gets scale 0 and codes 0.
    """
    _check_bits(bits)
    _check_float(x)
    qmax = 2 ** (bits - 1) - 1
    x32 = x.float()
    absmax = _reduce(x32.abs(), torch.amax, dim)
    scale = absmax / qmax
    codes = torch.round(x32 / _safe(scale)).clamp(-qmax, qmax)
    return codes.to(torch.int8), scale


def absmax_dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Restore values from absmax codes: ``codes * scale`` (float32)."""
    return codes.float() * scale


# --- zero-point (asymmetric, affine) ---------------------------------------------------------


def zeropoint_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric quantization: ``(codes, scale, zero_point)``.

    The range [min, max] (widened to include 0, so that 0 is stored exactly) is spread over
    all ``2**bits`` codes from ``qmin = -2**(bits-1)`` to ``qmax = 2**(bits-1) - 1``:
    ``scale = (max - min) / (qmax - qmin)``, ``zero_point = qmin - round(min / scale)`` (the
    code of 0.0), ``codes = clamp(round(x / scale) + zero_point, qmin, qmax)``. These are the
    formulas of torch's ``MinMaxObserver`` with ``torch.per_tensor_affine``.
    """
    _check_bits(bits)
    _check_float(x)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    x32 = x.float()
    low = torch.clamp(_reduce(x32, torch.amin, dim), max=0.0)
    high = torch.clamp(_reduce(x32, torch.amax, dim), min=0.0)
    scale = (high - low) / float(qmax - qmin)
    zero_point = (qmin - torch.round(low / _safe(scale))).clamp(qmin, qmax)
    codes = (torch.round(x32 / _safe(scale)) + zero_point).clamp(qmin, qmax)
    return codes.to(torch.int8), scale, zero_point.to(torch.int32)


def zeropoint_dequantize(
    codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> torch.Tensor:
    """Restore values from zero-point codes: ``(codes - zero_point) * scale`` (float32)."""
    return (codes.float() - zero_point.float()) * scale


# --- 4-bit lookup tables ---------------------------------------------------------------------


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 levels of NF4 ("4-bit NormalFloat"), computed from the normal distribution.

    If weights are normally distributed, the best 16 levels for them are the ones that
    split the distribution into bins of equal probability. NF4 takes quantiles of N(0, 1):
    8 for the positive side (at probabilities evenly spaced from `offset` down to 0.5) and
    7 for the negative side, plus an exact 0, then divides by the largest so the levels run
    from -1 to 1. (Asymmetric on purpose: with an exact zero, 16 levels cannot be symmetric.)
    """
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset={offset} must lie strictly between 0.5 and 1.")
    normal_quantile = torch.special.ndtri  # the inverse of the normal CDF
    positive = normal_quantile(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal_quantile(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def uniform_levels(bits: int = 4) -> torch.Tensor:
    """The levels of absmax quantization on the [-1, 1] scale: k / qmax for k = -qmax..qmax.

    For 4 bits that is 15 evenly spaced levels (one of the 16 codes goes unused, the price of
    symmetry); for 8 bits, 255.
    """
    qmax = 2 ** (_check_bits(bits) - 1) - 1
    return torch.arange(-qmax, qmax + 1, dtype=torch.float32) / qmax


def _check_levels(levels: torch.Tensor) -> torch.Tensor:
    levels = torch.as_tensor(levels, dtype=torch.float32).flatten()
    if levels.numel() < 2 or levels.numel() > 256:
        raise ValueError(f"a lookup table needs 2 to 256 levels, got {levels.numel()}.")
    if not bool((levels[1:] > levels[:-1]).all()):
        raise ValueError("the levels must be sorted in increasing order, without repeats.")
    if levels.abs().max() > 1:
        raise ValueError("the levels must lie in [-1, 1]: blocks are divided by their absmax.")
    return levels


def nearest_level(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the level nearest to each value (a value halfway between two goes down)."""
    levels = _check_levels(levels)
    midpoints = (levels[1:] + levels[:-1]) / 2
    return torch.bucketize(values.float(), midpoints)


# --- block-wise quantization ---------------------------------------------------------------


def _check_blocksize(blocksize: int) -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize={blocksize!r} must be a positive integer (64 in NF4).")
    return blocksize


def _blocks(x: torch.Tensor, blocksize: int) -> torch.Tensor:
    """Flatten and cut into rows of `blocksize`; a short last block is padded with zeros
    (zeros change no block's absmax, and their codes are dropped again)."""
    flat = x.float().flatten()
    pad = (-flat.numel()) % blocksize
    return torch.nn.functional.pad(flat, (0, pad)).view(-1, blocksize)


def blockwise_quantize(
    x: torch.Tensor, levels: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise lookup-table quantization: ``(codes, absmax)``.

    The tensor is flattened and cut into blocks of `blocksize` values; each block is divided
    by its own absmax (so it lies in [-1, 1]) and each value is replaced by the index of the
    nearest level. `codes` has the shape of `x` (uint8), `absmax` one float32 per block.
    An all-zero block gets absmax 0 and the code of the level nearest 0.
    """
    _check_float(x)
    _check_blocksize(blocksize)
    levels = _check_levels(levels)
    blocks = _blocks(x, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / _safe(absmax).unsqueeze(1)
    codes = nearest_level(scaled, levels).to(torch.uint8)
    return codes.flatten()[: x.numel()].view(x.shape), absmax


def blockwise_dequantize(
    codes: torch.Tensor, absmax: torch.Tensor, levels: torch.Tensor, blocksize: int = 64
) -> torch.Tensor:
    """Restore values: ``levels[code] * absmax`` of the code's block (float32, shape of codes)."""
    _check_blocksize(blocksize)
    levels = _check_levels(levels)
    values = levels[codes.long().flatten()]
    blocks = torch.nn.functional.pad(values, (0, (-values.numel()) % blocksize)).view(-1, blocksize)
    if blocks.shape[0] != absmax.numel():
        raise ValueError(
            f"{codes.numel()} codes in blocks of {blocksize} need {blocks.shape[0]} scales, "
            f"got {absmax.numel()}."
        )
    restored = blocks * absmax.float().view(-1, 1)
    return restored.flatten()[: codes.numel()].view(codes.shape)


# --- double quantization: quantize the scales themselves -----------------------------------


def double_quantize(
    absmax: torch.Tensor, blocksize: int = 256, bits: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize per-block scales: ``(codes, scales_of_scales, offset)``.

    The absmax values are all positive and similar, so we first subtract their mean (the
    `offset`, one float for the whole tensor) and then absmax-quantize what is left to
    `bits` bits in blocks of `blocksize` scales, each block with one float32 scale.
    (bitsandbytes does the same but maps the 8-bit codes through its non-linear "dynamic"
    table instead of evenly spaced levels.)
    """
    _check_float(absmax, "absmax")
    _check_blocksize(blocksize)
    offset = absmax.float().mean()
    blocks = _blocks(absmax - offset, blocksize)
    codes, scale = absmax_quantize(blocks, bits=bits, dim=1)
    return codes.flatten()[: absmax.numel()], scale.flatten(), offset


def double_dequantize(
    codes: torch.Tensor, scales: torch.Tensor, offset: torch.Tensor, blocksize: int = 256
) -> torch.Tensor:
    """Restore the per-block scales from `double_quantize`'s output."""
    _check_blocksize(blocksize)
    padded = torch.nn.functional.pad(codes, (0, (-codes.numel()) % blocksize))
    blocks = absmax_dequantize(padded.view(-1, blocksize), scales.view(-1, 1))
    return blocks.flatten()[: codes.numel()] + offset


# --- what it costs -------------------------------------------------------------------------


def bits_per_parameter(
    bits: int = 4,
    blocksize: int = 64,
    scale_bits: int = 32,
    double_quant: bool = False,
    scale_blocksize: int = 256,
    quantized_scale_bits: int = 8,
) -> float:
    """Average storage per weight, in bits, counting the scales.

    Without double quantization every block of `blocksize` weights adds one `scale_bits`
    float: ``bits + scale_bits / blocksize`` (4 + 32/64 = 4.5 for NF4). With it, each block
    adds a `quantized_scale_bits` code, and each group of `scale_blocksize` blocks shares
    one `scale_bits` float: ``bits + 8/64 + 32/(64*256)`` (about 4.127). The single offset
    per tensor is left out (32 bits over a whole matrix).
    """
    for name, value in (
        ("bits", bits),
        ("blocksize", blocksize),
        ("scale_bits", scale_bits),
        ("scale_blocksize", scale_blocksize),
        ("quantized_scale_bits", quantized_scale_bits),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if not double_quant:
        return bits + scale_bits / blocksize
    return bits + quantized_scale_bits / blocksize + scale_bits / (blocksize * scale_blocksize)


@dataclass(frozen=True)
class QuantError:
    """How far restored values are from the originals."""

    mean_abs: float  # average |x - x_restored|
    max_abs: float  # worst single value
    relative: float  # ||x - x_restored|| / ||x||  (0 = perfect)

    def __str__(self) -> str:
        return (
            f"mean |error| {self.mean_abs:.2e}, max |error| {self.max_abs:.2e}, "
            f"relative error {self.relative:.2%}"
        )


def quantization_error(original: torch.Tensor, restored: torch.Tensor) -> QuantError:
    """Compare a tensor with its quantize-then-dequantize round trip."""
    if original.shape != restored.shape:
        raise ValueError(f"shapes differ: {tuple(original.shape)} vs {tuple(restored.shape)}.")
    diff = (original.double() - restored.double()).abs()
    norm = original.double().norm()
    if norm > 0:
        relative = (diff.norm() / norm).item()
    else:  # an all-zero original: any error at all is infinitely large relative to it
        relative = math.inf if diff.max() > 0 else 0.0
    return QuantError(diff.mean().item(), diff.max().item(), relative)


# --- real bitsandbytes models ----------------------------------------------------------------


def _tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of distinct tensors (a lookup table shared by many layers counts once)."""
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def scale_bytes(model: torch.nn.Module) -> int:
    """Bytes of the quantization scales that a bitsandbytes model keeps *outside* its parameters.

    transformers' ``model.get_memory_footprint()`` counts parameters and buffers only, but
    bitsandbytes stores the per-block absmax of a 4-bit layer (and, with double
    quantization, the scales of those scales and two lookup tables) in the weight's
    ``quant_state``, and the per-row scales of an 8-bit layer in ``weight.SCB``. This
    function adds them up. A model that is not quantized gives 0.
    """
    tensors = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            tensors += [state.absmax, state.code]
            if getattr(state, "nested", False):
                tensors += [state.state2.absmax, state.state2.code, state.offset]
        scb = getattr(weight, "SCB", None)
        if isinstance(scb, torch.Tensor):
            tensors.append(scb)
    return _tensor_bytes(tensors)


def total_bytes(model: torch.nn.Module) -> int:
    """Everything the model's weights occupy: ``get_memory_footprint()`` plus ``scale_bytes``."""
    return model.get_memory_footprint() + scale_bytes(model)


def plot_grids(weights: torch.Tensor, blocksize: int = 64, bins: int = 201):
    """Two pictures of where quantization levels sit relative to real weights.

    Left: the weights divided by the absmax of the whole tensor, with int8's 255 evenly
    spaced levels (one scale per tensor). Right: the weights divided by the absmax of
    their own block of `blocksize`, with the 16 levels of NF4, of FP4 and of 4-bit absmax
    (15 used). Returns the figure; call ``plt.show()`` after it.
    """
    import matplotlib.pyplot as plt

    _check_float(weights, "weights")
    flat = weights.detach().float().flatten()
    per_tensor = (flat / flat.abs().max()).numpy()
    blocks = _blocks(flat, blocksize)
    per_block = (blocks / _safe(blocks.abs().amax(dim=1)).unsqueeze(1)).flatten()[: flat.numel()]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    left.hist(per_tensor, bins=bins, range=(-1, 1), color="lightgray")
    top = left.get_ylim()[1]
    left.vlines(uniform_levels(8).numpy(), top * 1.02, top * 1.12, color="tab:blue", lw=0.5)
    left.set_ylim(0, top * 1.14)
    left.set_title("one scale per tensor: int8 absmax levels (blue)")
    left.set_xlabel("weight / absmax of the whole matrix")
    left.set_ylabel("number of weights")

    right.hist(per_block.numpy(), bins=bins, range=(-1, 1), color="lightgray")
    top = right.get_ylim()[1]
    rows = [
        ("NF4", nf4_levels(), "tab:green"),
        ("FP4", fp4_levels(), "tab:red"),
        ("int4", uniform_levels(4), "tab:blue"),
    ]
    for i, (name, levels, color) in enumerate(rows):
        low, high = top * (1.02 + 0.12 * i), top * (1.12 + 0.12 * i)
        right.vlines(levels.numpy(), low, high, color=color, lw=1.2)
        right.text(1.06, (low + high) / 2, name, ha="left", va="center", color=color)
    right.set_ylim(0, top * 1.4)
    right.set_xlim(-1.08, 1.28)
    right.set_title(f"one scale per block of {blocksize}: 4-bit levels")
    right.set_xlabel(f"weight / absmax of its block of {blocksize}")
    fig.tight_layout()
    return fig


def fp4_levels() -> torch.Tensor:
    """bitsandbytes' 16 FP4 levels, sorted, on the [-1, 1] scale (0 appears twice: +0 and -0).

    FP4 is a tiny floating-point format (1 sign, 2 exponent and 1 mantissa bit), so its
    levels are spaced like a float's: dense near 0, sparse near ±1. The values come from
    bitsandbytes itself (``get_4bit_type("fp4")``); this returns the 15 distinct ones.
    """
    from bitsandbytes.functional import get_4bit_type

    return torch.unique(get_4bit_type("fp4", device="cpu").float())
