"""helpers.quantization: the hand-written quantizers, checked on small tensors (fast), and
the 4-bit options of helpers.load_model on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

import helpers
from helpers import models
from helpers import quantization as Q


def _randn(*shape, seed=0, std=0.1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * std


# ---------------------------------------------------------------- absmax (symmetric)
def test_absmax_known_values():
    codes, scale = Q.absmax_quantize(torch.tensor([0.5, -1.27, 0.02, 1.0]))
    assert math.isclose(scale.item(), 0.01, rel_tol=1e-6)
    assert codes.dtype == torch.int8
    assert codes.tolist() == [50, -127, 2, 100]


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("dim", [None, 1])
def test_absmax_round_trip_error_is_at_most_half_a_step(bits, dim):
    x = _randn(16, 64, seed=bits)
    codes, scale = Q.absmax_quantize(x, bits=bits, dim=dim)
    restored = Q.absmax_dequantize(codes, scale)
    qmax = 2 ** (bits - 1) - 1
    assert codes.abs().max() == qmax  # the largest magnitude gets the largest code
    assert ((restored - x).abs() <= scale / 2 * (1 + 1e-5)).all()
    if dim is not None:
        assert scale.shape == (16, 1)
        assert (codes.abs().amax(dim=1) == qmax).all()  # every row uses its full range


def test_absmax_keeps_zero_and_sign():
    x = torch.tensor([-3.0, 0.0, 1e-6, 3.0])
    codes, scale = Q.absmax_quantize(x)
    assert codes.tolist() == [-127, 0, 0, 127]
    assert Q.absmax_dequantize(codes, scale)[1].item() == 0.0


def test_absmax_all_zero_input_and_rows_give_zeros_not_nan():
    codes, scale = Q.absmax_quantize(torch.zeros(5))
    assert scale.item() == 0 and codes.tolist() == [0] * 5
    assert torch.equal(Q.absmax_dequantize(codes, scale), torch.zeros(5))
    x = torch.stack([torch.zeros(8), _randn(8)])
    codes, scale = Q.absmax_quantize(x, dim=1)
    restored = Q.absmax_dequantize(codes, scale)
    assert torch.isfinite(restored).all()
    assert torch.equal(restored[0], torch.zeros(8))
    assert (restored[1] - x[1]).abs().max() <= scale[1].item() / 2 + 1e-7


def test_absmax_agrees_with_torch_observer_and_fake_quantize():
    from torch.ao.quantization.observer import MinMaxObserver

    x = _randn(32, 32)
    codes, scale = Q.absmax_quantize(x)
    observer = MinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127
    )
    observer(x)
    torch_scale, torch_zero = observer.calculate_qparams()
    assert torch_scale.item() == scale.item() and torch_zero.item() == 0
    fake = torch.fake_quantize_per_tensor_affine(x, scale.item(), 0, -127, 127)
    steps = ((fake - Q.absmax_dequantize(codes, scale)).abs() / scale).round()
    assert steps.max() <= 1 and (steps == 0).float().mean() > 0.999  # see the zero-point test


# ---------------------------------------------------------------- zero-point (asymmetric)
def test_zeropoint_known_values():
    codes, scale, zero_point = Q.zeropoint_quantize(torch.tensor([-1.0, 0.0, 3.0]))
    assert math.isclose(scale.item(), 4 / 255, rel_tol=1e-6)
    assert zero_point.item() == -64  # -128 - round(-1 / (4/255)) = -128 + 64
    assert codes.tolist() == [-128, -64, 127]
    restored = Q.zeropoint_dequantize(codes, scale, zero_point)
    assert restored[1].item() == 0.0  # zero is stored exactly
    assert torch.allclose(restored, torch.tensor([-1.0, 0.0, 3.0]), atol=scale.item() / 2)


@pytest.mark.parametrize("bits", [3, 8])
def test_zeropoint_round_trip_error_and_full_code_range(bits):
    x = _randn(1000, seed=1) + 0.05  # lopsided, as zero-point is made for
    codes, scale, zero_point = Q.zeropoint_quantize(x, bits=bits)
    restored = Q.zeropoint_dequantize(codes, scale, zero_point)
    assert ((restored - x).abs() <= scale / 2 * (1 + 1e-4)).all()
    assert codes.min() == -(2 ** (bits - 1)) and codes.max() == 2 ** (bits - 1) - 1


def test_zeropoint_beats_absmax_on_lopsided_values():
    x = torch.rand(1000, generator=torch.Generator().manual_seed(2))  # all in [0, 1)
    _, s_abs = Q.absmax_quantize(x)
    _, s_zp, zp = Q.zeropoint_quantize(x)
    assert s_zp < s_abs  # 255 steps over [0, 1] instead of 127
    assert zp.item() == -128  # the range starts at 0, which gets the lowest code


def test_zeropoint_all_zero_and_per_row():
    codes, scale, zp = Q.zeropoint_quantize(torch.zeros(4))
    assert torch.equal(Q.zeropoint_dequantize(codes, scale, zp), torch.zeros(4))
    x = torch.stack([torch.zeros(6), torch.linspace(-1, 2, 6)])
    codes, scale, zp = Q.zeropoint_quantize(x, dim=1)
    restored = Q.zeropoint_dequantize(codes, scale, zp)
    assert scale.shape == zp.shape == (2, 1)
    assert torch.equal(restored[0], torch.zeros(6))
    assert (restored[1] - x[1]).abs().max() <= scale[1].item() / 2 + 1e-6


def test_zeropoint_agrees_with_torch_observer_and_fake_quantize():
    from torch.ao.quantization.observer import MinMaxObserver

    x = _randn(64, 64, seed=3) + 0.02
    codes, scale, zero_point = Q.zeropoint_quantize(x)
    observer = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    observer(x)
    torch_scale, torch_zero = observer.calculate_qparams()
    assert torch_scale.item() == scale.item() and torch_zero.item() == zero_point.item()
    fake = torch.fake_quantize_per_tensor_affine(x, scale.item(), int(zero_point), -128, 127)
    ours = Q.zeropoint_dequantize(codes, scale, zero_point)
    # torch multiplies by 1/scale where we divide by scale: at an exact tie the two may round
    # to neighbouring codes, so allow a rare one-step difference.
    steps = ((fake - ours).abs() / scale).round()
    assert steps.max() <= 1 and (steps == 0).float().mean() > 0.999


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [1, 9, 16, 32, 4.0, True, "8"])
@pytest.mark.parametrize("quantize", [Q.absmax_quantize, Q.zeropoint_quantize])
def test_unsupported_bit_widths_are_refused_with_the_range(quantize, bits):
    with pytest.raises(ValueError, match=r"bits=.* is not supported: use an integer from 2 to 8"):
        quantize(torch.ones(4), bits=bits)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.tensor([1, 2, 3]), TypeError, "floating-point"),
        ([0.1, 0.2], TypeError, "torch.Tensor"),
        (torch.tensor([]), ValueError, "empty"),
        (torch.tensor([1.0, float("nan")]), ValueError, "inf or NaN"),
        (torch.tensor([1.0, float("inf")]), ValueError, "inf or NaN"),
    ],
)
def test_bad_tensors_are_refused_with_the_reason(x, error, message):
    for quantize in (Q.absmax_quantize, Q.zeropoint_quantize):
        with pytest.raises(error, match=message):
            quantize(x)
    with pytest.raises(error, match=message):
        Q.blockwise_quantize(x, Q.nf4_levels())


def test_low_precision_input_is_quantized_from_its_exact_values():
    x = _randn(128).to(torch.bfloat16)
    codes, scale = Q.absmax_quantize(x)
    assert torch.equal(codes, Q.absmax_quantize(x.float())[0])


# ---------------------------------------------------------------- NF4 and block-wise
def test_nf4_levels_are_16_normal_quantiles_from_minus_1_to_1():
    levels = Q.nf4_levels()
    assert levels.shape == (16,)
    assert levels[0].item() == -1.0 and levels[-1].item() == 1.0
    assert (levels[1:] > levels[:-1]).all()
    assert (levels == 0).sum() == 1
    assert (levels > 0).sum() == 8 and (levels < 0).sum() == 7
    # Quantiles: the gaps widen away from 0, where a normal distribution thins out.
    gaps = (levels[1:] - levels[:-1])[8:]
    assert (gaps[1:] > gaps[:-1]).all()


def test_nf4_levels_match_bitsandbytes_table():
    import bitsandbytes.functional as functional  # pinned: imported, never skipped

    table = functional.get_4bit_type("nf4", device="cpu")
    assert torch.allclose(Q.nf4_levels(), table, atol=1e-6)


def test_nf4_offset_is_the_bitsandbytes_constant():
    assert math.isclose(Q.NF4_OFFSET, 0.9677083, abs_tol=1e-7)
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        Q.nf4_levels(offset=1.0)


def test_uniform_and_fp4_levels():
    assert Q.uniform_levels(4).shape == (15,) and Q.uniform_levels(8).shape == (255,)
    assert torch.equal(Q.uniform_levels(2), torch.tensor([-1.0, 0.0, 1.0]))
    fp4 = Q.fp4_levels()
    assert fp4.shape == (15,) and fp4[0] == -1 and fp4[-1] == 1 and (fp4 == 0).any()
    assert torch.allclose(fp4[fp4 > 0.1], torch.tensor([1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0]))


def test_nearest_level_known_values_and_ties_go_down():
    levels = Q.nf4_levels()
    assert Q.nearest_level(torch.tensor(0.375), levels).item() == 11  # 0.3379
    assert Q.nearest_level(torch.tensor([-5.0, 5.0]), levels).tolist() == [0, 15]
    uniform = torch.tensor([-1.0, 0.0, 1.0])
    assert Q.nearest_level(torch.tensor([0.5, -0.5, 0.51]), uniform).tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        (torch.tensor([0.5, -0.5]), "sorted"),
        (torch.tensor([-1.0, 0.0, 0.0, 1.0]), "sorted"),
        (torch.tensor([-2.0, 0.0, 2.0]), r"\[-1, 1\]"),
        (torch.tensor([0.0]), "2 to 256"),
    ],
)
def test_bad_level_tables_are_refused(levels, message):
    with pytest.raises(ValueError, match=message):
        Q.blockwise_quantize(torch.ones(8), levels, blocksize=4)


def test_blockwise_known_values_with_an_all_zero_block():
    x = torch.tensor([0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0])
    levels = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    codes, absmax = Q.blockwise_quantize(x, levels, blocksize=4)
    assert absmax.tolist() == [1.0, 0.0]
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert codes.tolist() == [3, 0, 2, 2, 2, 2, 2, 2]  # 0.25 is a tie: it goes down to 0
    restored = Q.blockwise_dequantize(codes, absmax, levels, blocksize=4)
    assert restored.tolist() == [0.5, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_blockwise_round_trip_error_bound_and_a_short_last_block():
    x = _randn(10, 13, seed=4)  # 130 values: two blocks of 64 and one of 2
    levels = Q.nf4_levels()
    codes, absmax = Q.blockwise_quantize(x, levels, blocksize=64)
    assert absmax.shape == (3,)
    assert math.isclose(absmax[2].item(), x.flatten()[128:].abs().max().item())
    restored = Q.blockwise_dequantize(codes, absmax, levels, blocksize=64)
    assert restored.shape == x.shape
    half_gap = ((levels[1:] - levels[:-1]).max() / 2).item()
    per_value_bound = absmax.repeat_interleave(64)[: x.numel()].view(x.shape) * half_gap
    assert ((restored - x).abs() <= per_value_bound + 1e-7).all()
    # the largest magnitude of every block is stored exactly (it maps to level -1 or 1)
    for b in range(3):
        block = x.flatten()[64 * b : 64 * (b + 1)]
        i = block.abs().argmax()
        assert math.isclose(restored.flatten()[64 * b + i].item(), block[i].item(), rel_tol=1e-6)


def test_blockwise_nf4_matches_bitsandbytes():
    import bitsandbytes.functional as functional  # pinned: imported, never skipped

    x = _randn(32, 128, seed=5)
    codes, absmax = Q.blockwise_quantize(x, Q.nf4_levels(), blocksize=64)
    ours = Q.blockwise_dequantize(codes, absmax, Q.nf4_levels(), blocksize=64)
    packed, state = functional.quantize_4bit(x, blocksize=64, quant_type="nf4")
    theirs = functional.dequantize_4bit(packed, state)
    assert torch.allclose(state.absmax, absmax)
    assert (ours - theirs).abs().max() < 1e-6


def test_blockwise_nf4_is_more_accurate_than_uniform_4bit_on_normal_weights():
    x = _randn(64, 64, seed=6)
    errors = {}
    for name, levels in {"nf4": Q.nf4_levels(), "int4": Q.uniform_levels(4)}.items():
        codes, absmax = Q.blockwise_quantize(x, levels)
        errors[name] = Q.quantization_error(x, Q.blockwise_dequantize(codes, absmax, levels))
    assert errors["nf4"].mean_abs < errors["int4"].mean_abs


def test_blockwise_errors_name_the_problem():
    levels = Q.nf4_levels()
    with pytest.raises(ValueError, match="blocksize=0"):
        Q.blockwise_quantize(torch.ones(8), levels, blocksize=0)
    codes, absmax = Q.blockwise_quantize(torch.ones(128), levels)
    with pytest.raises(ValueError, match="need 2 scales, got 1"):
        Q.blockwise_dequantize(codes, absmax[:1], levels)


# ---------------------------------------------------------------- double quantization
def test_double_quantization_round_trip():
    absmax = _randn(1000, seed=7).abs() + 0.05
    codes, scales, offset = Q.double_quantize(absmax, blocksize=256)
    assert codes.shape == (1000,) and codes.dtype == torch.int8
    assert scales.shape == (4,)  # ceil(1000 / 256)
    assert math.isclose(offset.item(), absmax.mean().item(), rel_tol=1e-6)
    restored = Q.double_dequantize(codes, scales, offset, blocksize=256)
    bound = scales.repeat_interleave(256)[:1000] / 2
    assert ((restored - absmax).abs() <= bound + 1e-6).all()


def test_double_quantization_of_equal_scales_is_exact():
    absmax = torch.full((300,), 0.25)
    restored = Q.double_dequantize(*Q.double_quantize(absmax))
    assert torch.allclose(restored, absmax, atol=1e-7)


def test_bits_per_parameter():
    assert Q.bits_per_parameter() == 4.5
    assert Q.bits_per_parameter(double_quant=True) == 4 + 8 / 64 + 32 / (64 * 256)
    assert Q.bits_per_parameter(bits=8, blocksize=576) == 8 + 32 / 576
    with pytest.raises(ValueError, match="blocksize=0"):
        Q.bits_per_parameter(blocksize=0)
    with pytest.raises(ValueError, match="bits=4.5"):
        Q.bits_per_parameter(bits=4.5)


# ---------------------------------------------------------------- errors
def test_quantization_error_known_values():
    err = Q.quantization_error(torch.tensor([1.0, -1.0]), torch.tensor([1.0, -0.5]))
    assert err.mean_abs == 0.25 and err.max_abs == 0.5
    assert math.isclose(err.relative, 0.5 / math.sqrt(2))
    assert "relative error 35.36%" in str(err)
    assert Q.quantization_error(torch.zeros(3), torch.zeros(3)).relative == 0.0
    assert Q.quantization_error(torch.zeros(3), torch.ones(3)).relative == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        Q.quantization_error(torch.zeros(3), torch.zeros(4))


# ---------------------------------------------------------------- load_model's 4-bit options
def test_4bit_variants_build_the_right_config():
    config = models.quantization_config("4bit", "cpu", quant_type="fp4", double_quant=False)
    assert config.bnb_4bit_quant_type == "fp4" and not config.bnb_4bit_use_double_quant
    default = models.quantization_config("4bit", "cpu")  # unchanged: NF4 + double quant
    assert default.bnb_4bit_quant_type == "nf4" and default.bnb_4bit_use_double_quant


@pytest.mark.parametrize(
    ("quantization", "kwargs", "message"),
    [
        ("8bit", {"quant_type": "fp4"}, "choose a 4-bit format"),
        (None, {"double_quant": False}, "choose a 4-bit format"),
        ("4bit", {"quant_type": "int4"}, "'int4': use one of"),
        ("4bit", {"double_quant": "yes"}, "use True or False"),
    ],
)
def test_4bit_options_are_checked(quantization, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.quantization_config(quantization, "cpu", **kwargs)


def _linear_blocks(model, blocksize=64):
    layers = [m for m in model.modules() if hasattr(getattr(m, "weight", None), "quant_state")]
    return layers, sum(math.ceil(m.in_features * m.out_features / blocksize) for m in layers)


def test_load_model_4bit_variants_and_their_scale_bytes():
    import bitsandbytes  # noqa: F401  (pinned: a broken install fails, it does not skip)

    plain, _ = helpers.load_model("tiny-random-smollm2", device="cpu")
    assert Q.scale_bytes(plain) == 0
    assert Q.total_bytes(plain) == plain.get_memory_footprint()

    fp4, _ = helpers.load_model(
        "tiny-random-smollm2", "4bit", device="cpu", quant_type="fp4", double_quant=False
    )
    layers, blocks = _linear_blocks(fp4)
    assert len(layers) == 2 * 7
    state = layers[0].weight.quant_state
    assert state.quant_type == "fp4" and not state.nested
    # one fp32 absmax per block of 64, plus each layer's 16-entry lookup table
    assert Q.scale_bytes(fp4) == 4 * blocks + len(layers) * 16 * 4

    nf4, _ = helpers.load_model("tiny-random-smollm2", "4bit", device="cpu")
    layers, blocks = _linear_blocks(nf4)
    state = layers[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested and state.absmax.dtype == torch.uint8
    # one byte per block; per layer: an fp32 scale per 256 blocks, the fp32 offset, the
    # 16-entry NF4 table and the 256-entry table that decodes the 8-bit scales
    per_layer = sum(
        4 * math.ceil(m.in_features * m.out_features / 64 / 256) + 4 + 16 * 4 + 256 * 4
        for m in layers
    )
    assert Q.scale_bytes(nf4) == blocks + per_layer
    # get_memory_footprint() does not see the scales: both variants look the same to it
    assert nf4.get_memory_footprint() == fp4.get_memory_footprint()


def test_scale_bytes_of_an_8bit_model_are_one_float_per_row():
    import bitsandbytes  # noqa: F401  (pinned: a broken install fails, it does not skip)

    model, _ = helpers.load_model("tiny-random-smollm2", "8bit", device="cpu")
    rows = sum(
        m.out_features
        for m in model.modules()
        if getattr(getattr(m, "weight", None), "SCB", None) is not None
    )
    assert rows > 0 and Q.scale_bytes(model) == 4 * rows


def test_log_once_lets_each_message_through_once(caplog):
    import logging

    from helpers.logs import log_once

    log_once("course.test.logger")
    log_once("course.test.logger")  # idempotent: a single filter
    logger = logging.getLogger("course.test.logger")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="course.test.logger"):
        for _ in range(3):
            logger.warning("inputs will be cast from %s", "torch.float32")
        logger.warning("another message")
    assert [r.getMessage() for r in caplog.records] == [
        "inputs will be cast from torch.float32",
        "another message",
    ]
