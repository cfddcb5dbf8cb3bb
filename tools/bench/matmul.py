"""The hardware limit: the fastest matrix multiply this machine runs, in FLOP/s.

``torch.matmul`` of an (m × k) by a (k × n) matrix costs 2·m·k·n FLOPs. Timing a few
large products, best of several repeats (the best run is the one least disturbed by
other processes), gives the peak that training can at most reach: training is mostly
matrix multiplies, and no framework multiplies faster than the BLAS library it calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

# Square sizes, and the shapes a SmolLM2 layer multiplies (tokens × hidden × MLP width).
FULL_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (1024, 576, 1536), (1024, 1536, 576))
QUICK_SHAPES = ((256, 256, 256), (512, 512, 512))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """The fastest of `repeats` timed calls of `fn`, after one untimed warm-up call."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_second(
    m: int,
    k: int,
    n: int,
    dtype: torch.dtype = torch.float32,
    *,
    repeats: int = 3,
    device: str = "cpu",
) -> float:
    """FLOP/s of ``a @ b`` for an (m × k) by (k × n) product, best of `repeats`."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=generator).to(device=device, dtype=dtype)
    seconds = best_seconds(lambda: a @ b, repeats, device)
    return 2 * m * k * n / seconds


def peak(
    shapes: Sequence[tuple[int, int, int]],
    dtype: torch.dtype = torch.float32,
    *,
    repeats: int = 3,
    device: str = "cpu",
) -> dict:
    """The best FLOP/s over `shapes`, with each shape's own figure."""
    by_shape = {
        "x".join(map(str, s)): matmul_flops_per_second(*s, dtype, repeats=repeats, device=device)
        for s in shapes
    }
    return {"flops_per_s": max(by_shape.values()), "by_shape": by_shape}


def with_threads(threads: int, fn: Callable[[], object]):
    """Run `fn` with torch limited to `threads` intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)
