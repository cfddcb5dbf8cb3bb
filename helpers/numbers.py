"""Number formats and what they cost: the arithmetic behind every `dtype` choice.

A model is a few hundred million numbers. How each one is stored decides how much
memory the model needs (bytes per parameter) and what it can represent (range and
precision). This module reads those facts from ``torch.finfo`` instead of quoting
them, predicts a model's size from its parameter count, and measures the real
tensors so that the two can be compared. Chapter 01 introduces it; the chapters on
quantization and memory reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""The three floating-point formats used to train and run language models."""

SHORT_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# Storage formats that are not torch dtypes (bitsandbytes' 4-bit NF4/FP4 pack two
# numbers in a byte) have a name only. The per-block scales that quantization adds
# are extra: chapter 02 measures them.
_BYTES_BY_NAME = {
    "fp32": 4.0,
    "float32": 4.0,
    "float": 4.0,
    "fp16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "int8": 1.0,
    "uint8": 1.0,
    "8bit": 1.0,
    "fp8": 1.0,
    "4bit": 0.5,
    "int4": 0.5,
    "nf4": 0.5,
    "fp4": 0.5,
}

SMOLLM2_135M_CONFIG = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
}
"""The shape of SmolLM2-135M-Instruct (from its config), enough to count its parameters."""


@dataclass(frozen=True)
class DtypeInfo:
    """Range and precision of one floating-point format, as ``torch.finfo`` reports them.

    A finite, normal value is ``(-1)**sign * 1.mantissa * 2**(exponent - bias)``: the
    exponent bits set the range (how large and how small), the mantissa bits set the
    precision (how many significant digits).
    """

    dtype: torch.dtype
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    smallest_normal: float
    smallest_subnormal: float
    eps: float

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def short_name(self) -> str:
        return SHORT_NAMES.get(self.dtype, self.name)

    @property
    def decimal_digits(self) -> float:
        """Significant decimal digits: (mantissa bits + the implicit leading 1) * log10(2)."""
        return (self.mantissa_bits + 1) * math.log10(2)


def dtype_info(dtype: torch.dtype) -> DtypeInfo:
    """Read the facts of a floating-point dtype from ``torch.finfo``.

    ``eps`` is the gap between 1 and the next representable number, ``2**-mantissa_bits``,
    so the mantissa width follows from it; the exponent gets the bits left after the sign.
    """
    fi = torch.finfo(dtype)
    mantissa = round(-math.log2(fi.eps))
    return DtypeInfo(
        dtype=dtype,
        bits=fi.bits,
        exponent_bits=fi.bits - 1 - mantissa,
        mantissa_bits=mantissa,
        max=float(fi.max),
        smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_normal) * float(fi.eps),
        eps=float(fi.eps),
    )


def dtype_table(dtypes: Iterable[torch.dtype] = FLOAT_DTYPES) -> str:
    """A printable table of bits, range and precision for each dtype (default fp32/fp16/bf16).

    The numbers are rounded (max to 5 significant digits, so fp16's 65504 stays exact),
    so the table is the same on every machine.
    """
    header = (
        f"{'dtype':<9}{'bits':>5}{'exponent':>10}{'mantissa':>10}"
        f"{'max':>12}{'smallest normal':>17}{'eps':>12}{'digits':>8}"
    )
    lines = [header]
    for dtype in dtypes:
        info = dtype_info(dtype)
        lines.append(
            f"{info.short_name:<9}{info.bits:>5}{info.exponent_bits:>10}{info.mantissa_bits:>10}"
            f"{info.max:>12.5g}{info.smallest_normal:>17.4g}{info.eps:>12.3e}"
            f"{info.decimal_digits:>8.1f}"
        )
    return "\n".join(lines)


def round_trip(value: float, dtype: torch.dtype) -> float:
    """Store `value` in `dtype` and read it back as a Python float: what survives?"""
    return torch.tensor(value, dtype=torch.float64).to(dtype).double().item()


def bit_pattern(value: float, dtype: torch.dtype) -> str:
    """The bits of `value` stored in `dtype`, as ``"sign exponent mantissa"``."""
    info = dtype_info(dtype)
    ints = {16: torch.int16, 32: torch.int32}[info.bits]
    raw = torch.tensor([value], dtype=torch.float64).to(dtype).view(ints).item()
    bits = format(raw & ((1 << info.bits) - 1), f"0{info.bits}b")
    return f"{bits[0]} {bits[1 : 1 + info.exponent_bits]} {bits[1 + info.exponent_bits :]}"


def all_finite_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite number a 16-bit format can hold, sorted, as float64 (-0 and +0 count once).

    A 16-bit format has only 65,536 bit patterns, so we can simply list them all.
    """
    if dtype_info(dtype).bits != 16:
        raise ValueError(f"{dtype} has more than 2**16 values; pass torch.float16 or bfloat16.")
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = patterns.view(dtype).double()
    return torch.unique(values[torch.isfinite(values)])


def bytes_per_parameter(dtype: torch.dtype | str) -> float:
    """Bytes one parameter takes: fp32 4, fp16/bf16 2, int8 1, 4-bit 0.5.

    Accepts a torch dtype or a name ("bf16", "bfloat16", "int8", "4bit", "nf4", ...).
    """
    if isinstance(dtype, torch.dtype):
        return float(dtype.itemsize)
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _BYTES_BY_NAME:
        known = ", ".join(sorted(_BYTES_BY_NAME))
        raise ValueError(f"Unknown number format {dtype!r}; use a torch dtype or one of: {known}")
    return _BYTES_BY_NAME[key]


def model_memory(num_params: int, dtype: torch.dtype | str) -> int:
    """Predicted bytes of weights: parameters x bytes per parameter (rounded up)."""
    return math.ceil(num_params * bytes_per_parameter(dtype))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (a tied embedding/LM head counts once)."""
    return sum(p.numel() for p in model.parameters())


def measure_weight_bytes(model: torch.nn.Module, buffers: bool = False) -> int:
    """Bytes the model's parameter tensors really hold (optionally its buffers too).

    Counted from the tensors themselves (``numel * element_size``), so it reflects the
    dtype each tensor actually has. With ``buffers=True`` it matches transformers'
    ``model.get_memory_footprint()`` for a model that is not quantized.
    """
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if buffers:
        total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total


def llama_parameters(config: Mapping | object) -> int:
    """Count the parameters of a Llama-style decoder from its config, by hand.

    Embedding (vocab x hidden), then per layer: the attention projections q and o
    (hidden x heads*head_dim), k and v (hidden x kv_heads*head_dim), the MLP's three
    projections (hidden x intermediate) and two RMSNorm weights; then a final norm and,
    unless it is tied to the embedding, an LM head. No biases (Llama has none).
    """

    def get(key):
        return config[key] if isinstance(config, Mapping) else getattr(config, key)

    hidden, layers = get("hidden_size"), get("num_hidden_layers")
    heads, kv_heads = get("num_attention_heads"), get("num_key_value_heads")
    try:
        head_dim = get("head_dim") or hidden // heads
    except (KeyError, AttributeError):
        head_dim = hidden // heads
    embedding = get("vocab_size") * hidden
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * get("intermediate_size")
    per_layer = attention + mlp + 2 * hidden
    head = 0 if get("tie_word_embeddings") else embedding
    return embedding + layers * per_layer + hidden + head


def plot_number_lines(low: float = 1.0, high: float = 1.0625):
    """Two pictures of fp16 vs bf16: the values between `low` and `high`, and the gaps.

    Left: every representable number in [low, high] as a tick. Right: the gap between
    a power of two and the next number, divided by it (log-log): flat at eps where the
    format is normal (its precision), rising among the tiny subnormals, and ending where
    the format runs out of exponents. Returns the matplotlib figure; call ``plt.show()`` after it.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    styles = {torch.float16: ("tab:blue", 1.0), torch.bfloat16: ("tab:orange", 0.0)}
    for dtype, (color, row) in styles.items():
        values = all_finite_values(dtype)
        inside = values[(values >= low) & (values <= high)]
        left.vlines(inside.numpy(), row - 0.35, row + 0.35, color=color, linewidth=0.8)
        positive = values[values > 0]
        gaps = positive[1:] - positive[:-1]
        starts = positive[:-1]
        # Within each power of two the relative gap saw-tooths by a factor of 2; keep
        # its value at the powers of two themselves, where it is largest.
        at_power_of_two = torch.log2(starts) == torch.round(torch.log2(starts))
        relative = gaps[at_power_of_two] / starts[at_power_of_two]
        right.plot(starts[at_power_of_two].numpy(), relative.numpy(), color=color)
        right.axvline(positive[-1].item(), color=color, linestyle=":", linewidth=1)
    left.set_yticks(
        [1.0, 0.0],
        [
            f"fp16 ({_count(torch.float16, low, high)} values)",
            f"bf16 ({_count(torch.bfloat16, low, high)} values)",
        ],
    )
    left.set_ylim(-0.7, 1.7)
    pad = (high - low) * 0.02
    left.set_xlim(low - pad, high + pad)
    left.set_title(f"representable numbers between {low:g} and {high:g}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("value")
    right.set_ylabel("relative gap to the next number")
    right.set_title("precision across the range (dotted: largest finite value)")
    right.legend(["fp16", "fp16 max", "bf16", "bf16 max"], fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _count(dtype: torch.dtype, low: float, high: float) -> int:
    values = all_finite_values(dtype)
    return int(((values >= low) & (values <= high)).sum())
