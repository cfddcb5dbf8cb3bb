"""Training FLOPs, counted analytically from the model's shapes and the batch as executed.

A matrix product of an (m × k) by a (k × n) matrix costs 2·m·k·n floating-point
operations (one multiply and one add per term). A linear layer with k inputs and n
outputs therefore costs 2·k·n FLOPs per token in the forward pass. Summed over the
linear layers, with N their number of weights, the forward pass costs 2N per token.

What one training step executes, per token (T tokens in the batch, padding included,
because padded positions are computed like the others):

========================  ==========================================================
forward                   2·(N_body + N_head + N_lora)
backward, input grads     2·(N_body + N_head + N_lora): every layer passes the gradient
                          to its input, frozen or not, so the layers below it can learn
backward, weight grads    2·N of the *trainable* weights only: N_body + N_head when
                          full fine-tuning, N_lora with LoRA
recomputation             + the forward of the blocks again (2·(N_body + N_lora), and the
                          attention forward) with gradient checkpointing; + 2·N_head
                          when the loss recomputes the LM head in the backward pass
                          (trl's fused, chunked LM head does, to avoid storing logits)
attention                 per layer and per row of length L: Q·Kᵀ and P·V cost
                          2·L²·d each (d = heads × head_dim), so 4·L²·d forward; the
                          backward costs twice that (gradients of Q, K, V and P)
========================  ==========================================================

N_body: the linear layers of the transformer blocks (for SmolLM2-135M, 30 × 3,538,944);
N_head: the output projection, vocabulary × hidden (49,152 × 576; tied to the embedding
in SmolLM2, which is a lookup and costs nothing); N_lora: the adapters' A and B matrices,
r·(d_in + d_out) per adapted layer. A 4-bit layer counts like an fp32 one: its weights
are de-quantized and multiplied at full size.

Approximations (each below 2% of the total for SmolLM2 at these lengths): element-wise work
(norms, activations, softmax, the optimizer) is not counted; attention is counted over the
full L × L square, as a kernel given an explicit padding mask computes it (a causal kernel
without a mask may skip half); with LoRA, autograd skips the input gradient of the first
layer's frozen projections, which is counted anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MatmulShape:
    """The matrix-multiply sizes of a causal LM: weights by kind, and the attention shape."""

    body: int  # weights of the linear layers inside the transformer blocks
    head: int  # weights of the output projection (vocabulary × hidden)
    lora: int  # weights of the LoRA adapters (0 without LoRA)
    layers: int
    heads: int
    head_dim: int
    train_body: bool  # the block weights receive gradients (full fine-tuning)
    train_head: bool  # the output projection receives gradients

    def as_dict(self) -> dict:
        return asdict(self)


def matmul_shape(model) -> MatmulShape:
    """Count the linear-layer weights of `model` (plain, 4-bit or with LoRA) by kind."""
    import torch

    body = head = lora = 0
    train_body = train_head = False
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        size = module.in_features * module.out_features
        trainable = module.weight.requires_grad
        if ".lora_" in name or name.startswith("lora_"):
            lora += size
        elif name.endswith("lm_head"):
            head += size
            train_head = train_head or trainable
        else:
            body += size
            train_body = train_body or trainable
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    config = config or model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return MatmulShape(
        body=body,
        head=head,
        lora=lora,
        layers=config.num_hidden_layers,
        heads=heads,
        head_dim=head_dim,
        train_body=train_body,
        train_head=train_head,
    )


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step, by part (see the module docstring)."""

    forward: int
    backward_input: int
    backward_weight: int
    recompute: int
    attention: int

    @property
    def total(self) -> int:
        return (
            self.forward + self.backward_input + self.backward_weight + self.recompute
        ) + self.attention

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def training_step_flops(
    shape: MatmulShape,
    row_lengths: Sequence[int],
    *,
    checkpointing: bool = False,
    head_recompute: bool = False,
    head_tokens: int | None = None,
) -> StepFlops:
    """FLOPs of one forward + backward pass over rows of these lengths (as executed).

    row_lengths: the length of every row of the batch as the model sees it (a padded
    batch of 8 × 128 is ``[128] * 8``; a padding-free batch is one row of the summed
    lengths). checkpointing: gradient checkpointing recomputes the blocks' forward.
    head_recompute: the loss recomputes the LM head in the backward pass.
    head_tokens: how many positions go through the LM head (default: all of them; a loss
    that projects only the positions carrying loss passes their number).
    """
    if not row_lengths or any(n < 1 for n in row_lengths):
        raise ValueError(f"row_lengths must be positive, got {list(row_lengths)!r}")
    tokens = sum(row_lengths)
    head_tokens = tokens if head_tokens is None else head_tokens
    width = shape.heads * shape.head_dim
    attention_forward = 4 * shape.layers * width * sum(n * n for n in row_lengths)
    blocks = shape.body + shape.lora
    trained = (shape.body if shape.train_body else 0) + shape.lora
    trained_head = shape.head if shape.train_head else 0
    recompute = 0
    if checkpointing:
        recompute += 2 * blocks * tokens + attention_forward
    if head_recompute:
        recompute += 2 * shape.head * head_tokens
    return StepFlops(
        forward=2 * blocks * tokens + 2 * shape.head * head_tokens,
        backward_input=2 * blocks * tokens + 2 * shape.head * head_tokens,
        backward_weight=2 * trained * tokens + 2 * trained_head * head_tokens,
        recompute=recompute,
        attention=3 * attention_forward,
    )
