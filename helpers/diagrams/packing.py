"""The attention mask of a packed (padding-free) batch, drawn from its position ids.

A padding-free or packed row holds several examples one after the other, with
``position_ids`` that restart at 0 where each example starts and no attention mask.
transformers turns those restarts into a block-diagonal causal mask: a token sees the
tokens before it *in its own example* only. These functions rebuild that mask from the
position ids alone, so the picture shows what the model is told, not what we meant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sequence_bounds(position_ids) -> list[tuple[int, int]]:
    """(start, end) of each example in one packed row: a new one starts where positions hit 0."""
    positions = torch.as_tensor(position_ids).flatten().tolist()
    if not positions:
        raise ValueError("position_ids is empty: pass the position ids of one packed row.")
    if positions[0] != 0:
        raise ValueError(
            f"a packed row starts at position 0, this one at {positions[0]}: pass the "
            "position_ids of a padding-free batch (trl: padding_free=True or packing=True)."
        )
    starts = [i for i, p in enumerate(positions) if p == 0]
    return list(zip(starts, starts[1:] + [len(positions)], strict=True))


def packed_attention_mask(position_ids) -> torch.Tensor:
    """The boolean mask [query, key] of one packed row: True where a query may attend."""
    bounds = sequence_bounds(position_ids)
    n = bounds[-1][1]
    example = torch.empty(n, dtype=torch.long)
    for k, (start, end) in enumerate(bounds):
        example[start:end] = k
    same_example = example[:, None] == example[None, :]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    return same_example & causal


def plot_packed_mask(
    position_ids,
    ax=None,
    *,
    labels: Sequence[int] | None = None,
    title: str | None = None,
):
    """Draw the block-diagonal causal mask of one packed row; returns the Figure.

    `labels` (the row's labels, -100 where no loss) shades the keys whose token carries
    no loss lighter, so the answers of each example stand out.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    mask = packed_attention_mask(position_ids)
    bounds = sequence_bounds(position_ids)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.4, 5.0))
    else:
        fig = ax.figure
    image = mask.to(torch.int8)
    if labels is not None:
        scored = torch.as_tensor(labels).flatten() != -100
        if scored.numel() != mask.shape[0]:
            raise ValueError(
                f"labels has {scored.numel()} entries, the row {mask.shape[0]}: pass the "
                "labels of the same packed row."
            )
        image = image + (mask & scored[None, :]).to(torch.int8)
        colors = ["#f2f2f2", "#9ecae1", "#dd8452"]
    else:
        colors = ["#f2f2f2", "#4c72b0"]
    ax.imshow(image.numpy(), cmap=ListedColormap(colors), interpolation="nearest")
    for start, _ in bounds[1:]:
        ax.axhline(start - 0.5, color="black", linewidth=0.6)
        ax.axvline(start - 0.5, color="black", linewidth=0.6)
    ax.set_xlabel("key position (what is attended to)")
    ax.set_ylabel("query position (the token being computed)")
    ax.set_title(
        title
        or f"{len(bounds)} packed examples, {mask.shape[0]} tokens: "
        f"{mask.sum().item() / mask.numel():.0%} of the pairs attend"
    )
    return fig
