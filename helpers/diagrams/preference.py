"""DPO as pictures: where the loss comes from, and what to watch while it trains.

``dpo_flow`` draws one preference pair going through the policy and the reference
(two LoRA adapters on one frozen base) to rewards, margin and loss. ``dpo_curves``
reads what ``DPOTrainer`` logs; ``plot_dpo_curves`` draws the four panels
practitioners watch: reward margin, reward accuracy, the two log-probabilities
(the failure mode is both falling), and the log-ratio to the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from . import canvas

WATCHED = (
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "rewards/chosen",
    "rewards/rejected",
)


def dpo_flow(beta: float = 0.1):
    """A pair -> policy and reference log-probs -> rewards -> margin -> loss."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.2))
    canvas.blank_axes(ax, 22, 8.4, equal=False)
    canvas.box(ax, 0.2, 5.2, 4.0, 2.2, "prompt +\nchosen answer", canvas.FROZEN, fontsize=9)
    canvas.box(ax, 0.2, 1.0, 4.0, 2.2, "prompt +\nrejected answer", canvas.FROZEN, fontsize=9)
    canvas.box(
        ax,
        6.0,
        5.2,
        4.6,
        2.2,
        "policy\nbase + adapter 'default'\n(trains)",
        canvas.TRAINED,
        fontsize=8,
    )
    canvas.box(
        ax,
        6.0,
        1.0,
        4.6,
        2.2,
        "reference\nbase + adapter 'ref'\n(frozen copy)",
        canvas.QUANTIZED,
        fontsize=8,
    )
    for y in (6.3, 2.1):
        canvas.arrow(ax, (4.2, y), (6.0, 6.3))
        canvas.arrow(ax, (4.2, y), (6.0, 2.1), linestyle="--")
    canvas.box(
        ax,
        12.4,
        3.1,
        4.4,
        2.4,
        "log p of each answer\n(sum over its tokens)\n"
        f"reward = {beta:g} x\n(log p_policy - log p_ref)",
        canvas.COMPUTE,
        fontsize=8,
    )
    canvas.arrow(ax, (10.6, 6.3), (12.4, 4.6))
    canvas.arrow(ax, (10.6, 2.1), (12.4, 4.0))
    canvas.box(
        ax,
        18.2,
        3.1,
        3.6,
        2.4,
        "margin =\nreward(chosen)\n- reward(rejected)\nloss = -log σ(margin)",
        canvas.COMPUTE,
        fontsize=8,
    )
    canvas.arrow(ax, (16.8, 4.3), (18.2, 4.3))
    canvas.legend(
        ax,
        {
            "trained": canvas.TRAINED,
            "frozen reference": canvas.QUANTIZED,
            "computed": canvas.COMPUTE,
        },
        loc="upper right",
    )
    ax.set_title("one DPO step on one pair: a second adapter on the same base is the reference")
    fig.tight_layout()
    return fig


def dpo_curves(log_history: Iterable[Mapping]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of each watched metric in a ``DPOTrainer``'s ``state.log_history``."""
    curves: dict[str, list[tuple[int, float]]] = {name: [] for name in WATCHED}
    for entry in log_history:
        for name in WATCHED:
            if name in entry:
                curves[name].append((entry["step"], entry[name]))
    return curves


def plot_dpo_curves(log_history: Sequence[Mapping], beta: float, title: str = "DPO training"):
    """Four panels: margin, accuracy, log-probabilities, log-ratio to the reference."""
    import matplotlib.pyplot as plt

    curves = dpo_curves(log_history)
    if not curves["rewards/margins"]:
        raise ValueError(
            "The log history holds no DPO metrics: train first, with logging_steps smaller "
            "than max_steps."
        )
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    panels = [
        ("reward margin", ["rewards/margins"], 1.0),
        ("reward accuracy", ["rewards/accuracies"], 1.0),
        ("log p of the answers", ["logps/chosen", "logps/rejected"], 1.0),
        ("log-ratio to the reference", ["rewards/chosen", "rewards/rejected"], 1.0 / beta),
    ]
    for ax, (label, names, scale) in zip(axes, panels, strict=True):
        for name in names:
            steps, values = zip(*curves[name], strict=True)
            short = name.split("/")[1]
            ax.plot(steps, [v * scale for v in values], "o-", markersize=3, label=short)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        if len(names) > 1:
            ax.legend(fontsize=8)
    axes[3].axhline(0, color="grey", lw=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
