"""Batched generation done right: eval mode, left padding, chat template, stop at EOS.

After ``trainer.train()`` a model is left in train mode (dropout on, and with
gradient checkpointing the KV cache off); batched greedy generation from it can
produce garbage. ``generate`` switches to eval mode and restores the previous
mode afterwards, so calling it never changes the model's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .modes import eval_mode

Messages = list[dict[str, str]]


def as_messages(prompt: str | Messages, system_prompt: str | None) -> Messages:
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        return prompt
    raise TypeError(
        "A prompt is a string (the user's message) or a list of {'role', 'content'} "
        f"messages; got {type(prompt).__name__}."
    )


def encoded_batches(tokenizer, texts: Sequence[str], batch_size: int, device, **encode):
    """The texts tokenized `batch_size` at a time, padded to the batch's longest, on `device`.

    `encode` goes to the tokenizer (``truncation``, ``add_special_tokens``, ...); the
    padding side is the tokenizer's (see ``helpers.modes.eval_mode``).
    """
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        yield tokenizer(batch, return_tensors="pt", padding=True, **encode).to(device)


@torch.no_grad()
def decode_batches(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    skip_special_tokens: bool = True,
    **decoding,
) -> list[str]:
    """The new text after each already-templated prompt; ``decoding`` goes to ``generate``.

    Shared by greedy answers (``generate``) and seeded sampling (``helpers.decoding``), so
    both get eval mode, left padding and the EOS handling.
    """
    answers: list[str] = []
    # eval mode: see the module docstring; left padding: new tokens follow the prompt directly
    with eval_mode(model, tokenizer, padding_side="left"):
        device = next(model.parameters()).device
        for enc in encoded_batches(tokenizer, texts, batch_size, device, add_special_tokens=False):
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **decoding,
            )
            new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
            if not skip_special_tokens:  # cut after the first EOS: the rest is padding
                eos = tokenizer.eos_token_id
                new_tokens = [t[: t.index(eos) + 1] if eos in t else t for t in new_tokens]
            answers += [
                t.strip()
                for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=skip_special_tokens)
            ]
    return answers


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: str | Messages | Sequence[str | Messages],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    system_prompt: str | None = None,
    skip_special_tokens: bool = True,
) -> str | list[str]:
    """Greedy answers to one prompt (returns a str) or to many (returns a list).

    A prompt is the user's text or a list of chat messages; the chat template is
    applied with the assistant turn opened. Decoding is greedy, so the same
    model gives the same answers. With ``skip_special_tokens=False`` an answer keeps
    the special tokens the model wrote, up to and including the end-of-sequence token
    where it stopped (the padding after it is dropped), so you can see whether it did.
    """
    single = isinstance(prompts, str) or (
        isinstance(prompts, list) and bool(prompts) and isinstance(prompts[0], dict)
    )
    batch = [prompts] if single else list(prompts)
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be at least 1.")
    texts = [
        tokenizer.apply_chat_template(
            as_messages(p, system_prompt), tokenize=False, add_generation_prompt=True
        )
        for p in batch
    ]
    answers = decode_batches(
        model,
        tokenizer,
        texts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        skip_special_tokens=skip_special_tokens,
        do_sample=False,
    )
    return answers[0] if single else answers
