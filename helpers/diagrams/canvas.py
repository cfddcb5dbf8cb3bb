"""Drawing primitives shared by the diagrams: labelled boxes and arrows on a blank axis."""

from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

FROZEN = "#d9d9d9"
TRAINED = "#f4a261"
QUANTIZED = "#8ecae6"
COMPUTE = "#b7e4c7"


def blank_axes(ax, width: float, height: float, *, equal: bool = True) -> None:
    """An axis with data coordinates 0..width x 0..height, no ticks (equal aspect by default)."""
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    if equal:
        ax.set_aspect("equal")
    ax.axis("off")


def box(ax, x, y, w, h, text, color=FROZEN, *, fontsize=9, rounded=True, **text_kwargs):
    """A filled rectangle with its lower-left corner at (x, y) and `text` in its centre."""
    style = "round,pad=0.02,rounding_size=0.08" if rounded else "square,pad=0"
    ax.add_patch(
        FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=color, edgecolor="black", lw=1)
    )
    return ax.text(
        x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, **text_kwargs
    )


def arrow(ax, start, end, *, color="black", style="-|>", lw=1.2, linestyle="-"):
    """An arrow from `start` to `end` (data coordinates)."""
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=12,
            color=color,
            lw=lw,
            linestyle=linestyle,
            shrinkA=0,
            shrinkB=0,
        )
    )


def legend(ax, entries: dict[str, str], **kwargs) -> None:
    """A legend of coloured boxes, one per (label: colour), in the diagrams' style."""
    handles = [Patch(facecolor=c, edgecolor="black", label=label) for label, c in entries.items()]
    ax.legend(handles=handles, fontsize=8, frameon=False, **kwargs)


def texts(figure) -> list[str]:
    """Every text drawn on `figure` (titles, labels, box captions), in drawing order."""
    from matplotlib.text import Text

    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]
