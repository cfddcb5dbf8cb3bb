"""Exercises of chapter 02, quantization."""

from __future__ import annotations

import math

from . import (
    AnswerMissing,
    as_number,
    call_answer,
    near_ratio,
    near_value,
    number,
    refuse_course_solution,
    register,
)

QUANTIZER_SEED = 2026
"""Exercise 02.1 draws its test tensors from this seed: tensors the chapter never shows."""

NF4_WEIGHT, NF4_ABSMAX = 0.03, 0.08
"""Exercise 02.2: a weight and the absmax of its block of 64."""


def _quantizer_cases():
    """Tensors the learner's quantizer has not seen: shapes, signs and outliers vary."""
    import torch

    generator = torch.Generator().manual_seed(QUANTIZER_SEED)
    normal = torch.randn(64, 48, generator=generator) * 0.05
    lopsided = torch.rand(300, generator=generator) * 3.0 + 0.5  # all positive
    negative_outlier = torch.randn(10, 10, generator=generator)
    negative_outlier[3, 7] = -9.0  # the largest magnitude is negative
    return [normal, lopsided, negative_outlier, torch.tensor([0.8, -2.54, 0.3, 1.27])]


def _absmax_reference(x):
    """The reference for 02.1: the chapter's absmax quantizer, one scale per tensor."""
    from .. import quantization

    return quantization.absmax_quantize(x, bits=8)


def _as_codes_and_scale(result):
    """(codes, scale as a float) from what a learner's quantizer returned."""
    import torch

    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AnswerMissing("return two things, (codes, scale), like quantization.absmax_quantize")
    codes, scale = (torch.as_tensor(part).detach().cpu() for part in result)
    if scale.numel() != 1:
        raise AnswerMissing("one scale for the whole tensor: the scale should be a single number")
    return codes, float(scale.reshape(()))


def _quantizer_results(function):
    import torch

    out = []
    for x in _quantizer_cases():
        codes, scale = _as_codes_and_scale(call_answer(function, x.clone()))
        ref_codes, ref_scale = _absmax_reference(x)
        out.append((x, codes, scale, ref_codes.to(torch.float64), float(ref_scale)))
    return out


def _compare_quantizer(answer, expected) -> bool:
    import math

    import torch

    for x, codes, scale, ref_codes, ref_scale in _quantizer_results(answer):
        if codes.shape != x.shape:
            return False
        if codes.is_floating_point() and not torch.equal(codes, codes.round()):
            return False
        if not math.isclose(scale, ref_scale, rel_tol=1e-5):
            return False
        diff = (codes.to(torch.float64) - ref_codes).abs()
        # dividing by the scale or multiplying by 127 / absmax may differ by one code on a tie
        if diff.max() > 1 or (diff > 0).double().mean() > 1e-3:
            return False
    return True


def _quantizer_hint(answer, expected):
    import math

    import torch

    results = _quantizer_results(answer)
    for x, codes, *_ in results:
        if codes.shape != x.shape:
            return "return one code per value: codes must have the shape of x"
        if codes.is_floating_point() and torch.allclose(codes.double(), x.double(), atol=0.05):
            return "those are the restored values: return the codes, round(x / scale)"
        if codes.is_floating_point() and not torch.equal(codes, codes.round()):
            return "codes are integers: round x / scale (torch.round) before returning it"
    ratios = [scale / ref_scale for _, _, scale, _, ref_scale in results]
    if all(math.isclose(r, 127 / 255, rel_tol=1e-4) for r in ratios):
        return "absmax maps the largest magnitude to 127, not 255: divide it by 127"
    if all(math.isclose(r, 127 / 128, rel_tol=1e-4) for r in ratios):
        return "codes run from -127 to 127 here: divide the absmax by 127, not 128"
    if all(math.isclose(r, 127, rel_tol=1e-4) for r in ratios):
        return "the scale is absmax / 127, not absmax itself"
    if any(not math.isclose(r, 1, rel_tol=1e-5) for r in ratios):
        return (
            "the scale comes from the largest *magnitude*, x.abs().max(); one of the test "
            "tensors has its largest magnitude on a negative value"
        )
    return None


def _nf4_levels() -> list[float]:
    from .. import quantization

    return quantization.nf4_levels().tolist()


def _nf4_level() -> float:
    import torch

    from .. import quantization

    levels = quantization.nf4_levels()
    index = quantization.nearest_level(torch.tensor(NF4_WEIGHT / NF4_ABSMAX), levels)
    return float(levels[index])


def _nf4_hint(answer, expected):
    value = as_number(answer)
    normalized = NF4_WEIGHT / NF4_ABSMAX
    levels = _nf4_levels()
    index = levels.index(min(levels, key=lambda v: abs(v - expected)))
    if math.isclose(value, normalized, abs_tol=1e-3):
        return (
            f"{normalized} is the normalized weight itself: NF4 can only store one of its "
            "16 levels, so which level is nearest to it?"
        )
    if value == index:
        return "that is the level's position in the table; give the level's value"
    if math.isclose(value, expected * NF4_ABSMAX, rel_tol=1e-2):
        return (
            "that is the weight restored after dequantization (level x absmax); give the "
            "level itself, on the [-1, 1] scale"
        )
    if any(math.isclose(value, v, abs_tol=1e-3) for v in levels):
        return "that is an NF4 level, but not the one nearest to the normalized weight"
    if math.isclose(value, NF4_WEIGHT, rel_tol=1e-6):
        return "first divide the weight by its block's absmax"
    return None


def _bytes_per_block() -> float:
    from .. import quantization

    return quantization.bits_per_parameter(bits=4, blocksize=64, scale_bits=32) * 64 / 8


register(
    "02.1",
    "Write answer_02_1(x): absmax int8 quantization of a float tensor with one scale, "
    "returning (codes, scale) with scale = max|x| / 127 and codes = round(x / scale).",
    lambda: _absmax_reference,
    _compare_quantizer,
    hints=[_quantizer_hint],
    fallback_hint=(
        "scale = x.abs().max() / 127, codes = torch.round(x / scale); return (codes, scale)"
    ),
)

register(
    "02.2",
    f"A weight of {NF4_WEIGHT} sits in a block of 64 whose absmax is {NF4_ABSMAX}. Which NF4 "
    "level (a number in [-1, 1]) stores it?",
    _nf4_level,
    number(abs_tol=5e-4),
    hints=[_nf4_hint],
    fallback_hint=(
        "divide the weight by its block's absmax, then pick the nearest of the 16 NF4 levels "
        "(quantization.nf4_levels())"
    ),
)

register(
    "02.3",
    "How many bytes does one NF4 block take: 64 weights in 4 bits each, plus its absmax "
    "stored as an fp32 number (no double quantization)?",
    _bytes_per_block,
    number(rel_tol=1e-9),
    hints=[
        near_value(32.0, "that is the 64 codes alone: the block also stores its scale"),
        near_value(68.0, "4 bits is half a byte, not a byte"),
        near_value(288.0, "give the answer in bytes, not bits"),
        near_value(260.0, "that is the block in fp32: the weights take 4 bits each"),
        near_value(
            33.0,
            "that is the size with double quantization (an 8-bit scale); here the absmax is fp32",
        ),
        near_value(4.5, "that is bits per weight: multiply by the 64 weights, divide by 8"),
        near_ratio(1 / 64, "that is bytes per weight: a block has 64 of them"),
    ],
    fallback_hint="64 weights x 4 bits, plus 32 bits for the absmax, then divide by 8",
)


BNB_FIELDS = {
    "load_in_4bit": True,
    "load_in_8bit": False,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
}
"""Exercise 02.4: the fields of a BitsAndBytesConfig for NF4 with double quantization."""


def _bnb_fields(config) -> dict:
    if isinstance(config, dict):
        raise AnswerMissing("build the config object: BitsAndBytesConfig(...) from transformers")
    if type(config).__name__ != "BitsAndBytesConfig":
        raise AnswerMissing(
            f"give a transformers BitsAndBytesConfig, not a {type(config).__name__}"
        )
    return {field: getattr(config, field) for field in BNB_FIELDS}


def _reference_bnb():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
    )


def _compare_bnb(answer, expected) -> bool:
    return _bnb_fields(answer) == _bnb_fields(expected) == BNB_FIELDS


def _bnb_hint(answer, expected):
    got = _bnb_fields(answer)
    if got["load_in_8bit"]:
        return "load_in_8bit=True is LLM.int8(); NF4 is a 4-bit format: load_in_4bit=True"
    if not got["load_in_4bit"]:
        return "ask for 4 bits: load_in_4bit=True"
    if got["bnb_4bit_quant_type"] != "nf4":
        return f"bnb_4bit_quant_type={got['bnb_4bit_quant_type']!r}: the chapter's choice is 'nf4'"
    if not got["bnb_4bit_use_double_quant"]:
        return "double quantization is off: bnb_4bit_use_double_quant=True"
    return None


register(
    "02.4",
    "Write the BitsAndBytesConfig that loads a model in 4-bit NF4 with double quantization.",
    _reference_bnb,
    _compare_bnb,
    hints=[_bnb_hint],
    fallback_hint="BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=..., ...)",
)


# ---------------------------------------------------------------- 02.5
BLOCK_CASES = ((128, 64, 51), (96, 32, 52), (40, 8, 53))
"""Exercise 02.5: (length, blocksize, seed) of the random tensors the check quantizes."""


def _block_inputs():
    import torch

    from ..quantization import nf4_levels, uniform_levels

    cases = []
    for (length, blocksize, seed), levels in zip(
        BLOCK_CASES, (nf4_levels(), uniform_levels(4), nf4_levels()), strict=True
    ):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(length, generator=generator) * 0.05
        x[: blocksize // 2] *= 10  # one block with an outlier-sized scale
        cases.append((x, levels, blocksize))
    return cases


def _blockwise_quantize():
    from ..quantization import blockwise_quantize

    return blockwise_quantize


def _block_answers(answer):
    import torch

    from ..quantization import blockwise_quantize, nearest_level

    refuse_course_solution(answer, nearest_level, registered=blockwise_quantize)
    got = []
    for x, levels, blocksize in _block_inputs():
        result = call_answer(answer, x.clone(), levels.clone(), blocksize)
        if not isinstance(result, tuple) or len(result) != 2:
            raise AnswerMissing("return a pair (codes, absmax)")
        codes, absmax = (torch.as_tensor(t) for t in result)
        got.append((codes, absmax, (x, levels, blocksize)))
    return got


def _same_blocks(answer, expected) -> bool:
    import torch

    from ..quantization import blockwise_quantize

    for codes, absmax, (x, levels, blocksize) in _block_answers(answer):
        want_codes, want_absmax = blockwise_quantize(x, levels, blocksize)
        if codes.numel() != x.numel() or absmax.numel() != want_absmax.numel():
            return False
        if not torch.equal(codes.flatten().long(), want_codes.flatten().long()):
            return False
        if not torch.allclose(absmax.flatten().float(), want_absmax, rtol=1e-6):
            return False
    return True


def _block_hint(answer, expected):
    import torch

    from ..quantization import blockwise_quantize

    for codes, absmax, (x, levels, blocksize) in _block_answers(answer):
        want_codes, want_absmax = blockwise_quantize(x, levels, blocksize)
        if absmax.numel() == 1 and want_absmax.numel() > 1:
            return "one scale for the whole tensor: each block of blocksize values gets its own"
        if absmax.numel() != want_absmax.numel():
            return f"{x.numel()} values in blocks of {blocksize} need {want_absmax.numel()} scales"
        if torch.allclose(absmax.flatten().float(), x.view(-1, blocksize).amax(dim=1)):
            return "the scale is the largest absolute value, max|x|, of each block"
        if codes.numel() != x.numel():
            return "return one code per value"
        if codes.float().min() < 0 or codes.float().max() > len(levels) - 1:
            return "a code is the index of a level (0 to 15), not the level itself"
        if not torch.equal(codes.flatten().long(), want_codes.flatten().long()):
            return "divide each block by its absmax, then take the index of the nearest level"
    return None


register(
    "02.5",
    "Write answer_02_5(x, levels, blocksize): block-wise quantization with a lookup table. "
    "Cut the 1-D tensor x into blocks of blocksize values, divide each block by its absmax, "
    "and replace each value by the index of the nearest of `levels`; return (codes, absmax).",
    lambda: _blockwise_quantize(),
    _same_blocks,
    hints=[_block_hint],
    fallback_hint="blocks = x.view(-1, blocksize); absmax per row; nearest level per value",
)
