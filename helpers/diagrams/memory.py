"""The parts of a training step's predicted peak, beside the measured peak (chapter 05).

The estimator (``helpers.memory.estimate``) predicts a total *and* its parts; a
measurement gives only a total. Drawing the estimated parts as a stacked bar with
the measured total as a mark shows both what the estimate is made of and how close
its sum comes, where two bars of equal length would show only the latter.
"""

from __future__ import annotations

from collections.abc import Mapping

LOGITS_DETAIL = "logits: log-probabilities and their gradients (fp32)"
"""The estimator's ``details`` entry for the fp32 logits kept for the loss."""

PARTS = ("weights", "gradients", "optimizer states", "activations", "logits")
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def breakdown(estimate) -> dict[str, int]:
    """The predicted peak in five parts (bytes): the logits split off the activations.

    The logits are a part of their own only when the peak comes at the start of the
    backward pass, where the estimator counts them; at the other moments (end of the
    backward pass, a recomputed layer, the optimizer step) they are already freed.
    The parts add up to ``estimate.total``.
    """
    at_logits = estimate.settings.get("moment") == "start of backward"
    logits = estimate.details.get(LOGITS_DETAIL, 0) if at_logits else 0
    parts = {
        "weights": estimate.weights,
        "gradients": estimate.gradients,
        "optimizer states": estimate.optimizer_states,
        "activations": estimate.activations - logits,
        "logits": logits,
    }
    if sum(parts.values()) != estimate.total:
        raise ValueError("the estimate's parts do not add up to its total")
    return parts


def plot_breakdown(rows: Mapping[str, tuple], ax=None, *, title: str | None = None):
    """Stacked bars of each row's estimated parts, a black mark at its measured peak.

    rows: name -> (MemoryEstimate, measured peak in bytes). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows is empty: give at least one (estimate, measured bytes) pair.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.4))
    else:
        fig = ax.figure
    names = list(rows)
    for y, name in enumerate(names):
        estimate, measured = rows[name]
        left = 0.0
        for part, color in zip(PARTS, COLORS, strict=True):
            width = breakdown(estimate)[part] / 1e6
            ax.barh(y, width, left=left, color=color, height=0.6, label=part if y == 0 else None)
            left += width
        ax.plot(
            [measured / 1e6] * 2,
            [y - 0.4, y + 0.4],
            color="black",
            linewidth=2,
            label="measured peak" if y == 0 else None,
        )
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("MB (estimated parts stacked; black line: measured peak)")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
