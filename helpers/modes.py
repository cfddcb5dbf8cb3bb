"""Borrow a model (and its tokenizer) for inference, and give them back as they were.

After ``trainer.train()`` a model is left in train mode (dropout on; with gradient
checkpointing the KV cache off), and batched generation needs left padding where
scoring needs right padding. Every helper that runs a model for inference switches
both, and must put them back even when it fails: otherwise calling a helper would
silently change the learner's model or tokenizer for the next cell.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

PADDING_SIDES = ("left", "right")


@contextlib.contextmanager
def eval_mode(model, tokenizer=None, *, padding_side: str | None = None) -> Iterator[None]:
    """Run the block with `model` in eval mode (and `tokenizer` padding on `padding_side`).

    Afterwards, also after an exception, the model's train/eval mode and the tokenizer's
    padding side are what they were before. Gradients are not switched off: decorate
    the function with ``torch.no_grad()`` where none are needed.
    """
    if padding_side is not None and padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side={padding_side!r} is not one of {PADDING_SIDES}.")
    if padding_side is not None and tokenizer is None:
        raise ValueError("padding_side needs the tokenizer: eval_mode(model, tokenizer, ...).")
    was_training = model.training
    side = tokenizer.padding_side if tokenizer is not None else None
    model.eval()
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    try:
        yield
    finally:
        if tokenizer is not None:
            tokenizer.padding_side = side
        model.train(was_training)
