"""helpers.numbers: dtype facts, round trips, bytes per parameter, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import numbers

SMOLLM2_PARAMS = 134_515_008


@pytest.mark.parametrize(
    ("dtype", "bits", "exponent", "mantissa"),
    [
        (torch.float32, 32, 8, 23),
        (torch.float16, 16, 5, 10),
        (torch.bfloat16, 16, 8, 7),
    ],
)
def test_dtype_info_splits_the_bits(dtype, bits, exponent, mantissa):
    info = numbers.dtype_info(dtype)
    assert (info.bits, info.exponent_bits, info.mantissa_bits) == (bits, exponent, mantissa)
    assert info.eps == 2.0**-mantissa
    assert info.max == float(torch.finfo(dtype).max)
    assert info.smallest_normal == float(torch.finfo(dtype).smallest_normal)


def test_fp16_and_bf16_facts():
    fp16, bf16 = numbers.dtype_info(torch.float16), numbers.dtype_info(torch.bfloat16)
    assert fp16.max == 65504.0
    assert fp16.smallest_subnormal == 2.0**-24
    assert bf16.smallest_normal == numbers.dtype_info(torch.float32).smallest_normal
    assert fp16.short_name == "fp16" and bf16.name == "bfloat16"
    assert round(bf16.decimal_digits, 1) == 2.4 and round(fp16.decimal_digits, 1) == 3.3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_smallest_subnormal_is_really_the_smallest(dtype):
    tiny = numbers.dtype_info(dtype).smallest_subnormal
    assert numbers.round_trip(tiny, dtype) == tiny
    assert numbers.round_trip(tiny * 0.49, dtype) == 0.0


def test_dtype_table_lists_the_three_formats():
    lines = numbers.dtype_table().splitlines()
    assert len(lines) == 4
    assert [line.split()[0] for line in lines[1:]] == ["fp32", "fp16", "bf16"]
    fp16 = lines[2].split()
    assert fp16[1:5] == ["16", "5", "10", "65504"]


def test_round_trip_shows_overflow_underflow_and_rounding():
    assert numbers.round_trip(70000.0, torch.float16) == math.inf
    assert numbers.round_trip(70000.0, torch.bfloat16) == 70144.0
    assert numbers.round_trip(1e-8, torch.float16) == 0.0
    assert numbers.round_trip(1e-8, torch.bfloat16) > 0.0
    assert numbers.round_trip(1 + 1e-4, torch.float16) == 1.0
    assert numbers.round_trip(1 + 1e-4, torch.float32) != 1.0
    assert numbers.round_trip(2049.0, torch.float16) == 2048.0
    assert numbers.round_trip(0.5, torch.bfloat16) == 0.5


def test_bit_pattern():
    assert numbers.bit_pattern(1.0, torch.bfloat16) == "0 01111111 0000000"
    assert numbers.bit_pattern(-2.0, torch.float16) == "1 10000 0000000000"
    assert numbers.bit_pattern(1.5, torch.float32) == "0 01111111 1" + "0" * 22
    assert numbers.bit_pattern(65504.0, torch.float16) == "0 11110 1111111111"


def test_all_finite_values_of_16_bit_formats():
    fp16 = numbers.all_finite_values(torch.float16)
    bf16 = numbers.all_finite_values(torch.bfloat16)
    # 65,536 patterns; exponent all ones (inf/NaN) takes 2 * 2**mantissa; -0 == +0.
    assert len(fp16) == 2**16 - 2 * 2**10 - 1
    assert len(bf16) == 2**16 - 2 * 2**7 - 1
    assert fp16.max().item() == 65504.0 and fp16.min().item() == -65504.0
    assert bool((fp16[1:] > fp16[:-1]).all())
    with pytest.raises(ValueError, match="2\\*\\*16"):
        numbers.all_finite_values(torch.float32)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float32, 4),
        (torch.float16, 2),
        (torch.bfloat16, 2),
        (torch.int8, 1),
        ("fp32", 4),
        ("bf16", 2),
        ("torch.bfloat16", 2),
        ("FP16", 2),
        ("int8", 1),
        ("4bit", 0.5),
        ("nf4", 0.5),
    ],
)
def test_bytes_per_parameter(dtype, expected):
    assert numbers.bytes_per_parameter(dtype) == expected


def test_bytes_per_parameter_rejects_unknown_names():
    with pytest.raises(ValueError, match="Unknown number format 'fp12'"):
        numbers.bytes_per_parameter("fp12")


def test_model_memory():
    assert numbers.model_memory(SMOLLM2_PARAMS, torch.float32) == 538_060_032
    assert numbers.model_memory(SMOLLM2_PARAMS, "bf16") == 269_030_016
    assert numbers.model_memory(SMOLLM2_PARAMS, "4bit") == 67_257_504
    assert numbers.model_memory(3, "4bit") == 2  # half bytes round up


def test_llama_parameters_of_smollm2():
    assert numbers.llama_parameters(numbers.SMOLLM2_135M_CONFIG) == SMOLLM2_PARAMS


def _small_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_llama_parameters_matches_a_real_model(tied):
    model = _small_llama(tied)
    assert numbers.llama_parameters(model.config) == numbers.count_parameters(model)


def test_measure_weight_bytes_follows_the_dtype():
    model = _small_llama(tied=True)
    params = numbers.count_parameters(model)
    assert numbers.measure_weight_bytes(model) == 4 * params
    assert numbers.measure_weight_bytes(model, buffers=True) == model.get_memory_footprint()
    assert numbers.measure_weight_bytes(model, buffers=True) > 4 * params  # rotary buffers
    model.to(torch.bfloat16)
    assert numbers.measure_weight_bytes(model) == 2 * params
    assert numbers.measure_weight_bytes(model) == numbers.model_memory(params, "bf16")


def test_plot_number_lines_draws_two_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = numbers.plot_number_lines(1.0, 1.0625)
    try:
        assert len(fig.axes) == 2
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert labels == ["fp16 (65 values)", "bf16 (9 values)"]
    finally:
        plt.close(fig)
