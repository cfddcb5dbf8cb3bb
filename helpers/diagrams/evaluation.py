"""Differences between two models with their bootstrap intervals, one row per metric.

A bar of "fine-tuned minus base" hides the question that matters: could the difference
be noise? Each row shows the observed difference as a dot and its interval as a line;
a line that crosses 0 is a difference the test set cannot tell from chance.
"""

from __future__ import annotations

from collections.abc import Mapping


def plot_differences(rows: Mapping[str, object], ax=None, *, title: str | None = None):
    """rows: label -> ``helpers.metrics.Difference``. Returns the Figure."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows is empty: give at least one label -> Difference.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    else:
        fig = ax.figure
    for y, d in enumerate(rows.values()):
        color = "#55a868" if d.excludes_zero else "#c44e52"
        ax.plot([d.low, d.high], [y, y], color=color, linewidth=3, solid_capstyle="butt")
        ax.plot([d.difference], [y], "o", color="black", markersize=5)
    ax.axvline(0, color="grey", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.invert_yaxis()
    pct = round(100 * next(iter(rows.values())).confidence)
    ax.set_xlabel(f"fine-tuned minus base (dot) with its {pct}% paired-bootstrap interval")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
