"""Sampled answers with a fixed seed, to compare with ``helpers.generate``'s greedy ones.

Greedy decoding picks the most likely token every time: one answer per prompt. Sampling
draws each token from the model's distribution, reshaped by ``temperature`` (below 1:
sharper) and ``top_p`` (keep the smallest set of tokens whose probabilities add up to
p). A score measured on sampled answers is a random variable: report its mean and spread
over several seeds, never one draw. The seed makes a draw repeatable on one machine;
another machine (other kernels, other thread counts) may draw different tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .generation import Messages, as_messages, decode_batches


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: Sequence[str | Messages],
    *,
    seed: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 16,
) -> list[str]:
    """One sampled answer per prompt; the same `seed` gives the same answers on one machine."""
    if temperature <= 0:
        raise ValueError(
            f"temperature={temperature!r}: sampling needs a temperature above 0 "
            "(temperature 0 is greedy decoding: use helpers.generate)."
        )
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r} must be in (0, 1].")
    texts = [
        tokenizer.apply_chat_template(
            as_messages(p, None), tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    torch.manual_seed(seed)
    return decode_batches(
        model,
        tokenizer,
        texts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,  # transformers' default top_k=50 would cut the distribution too
    )
