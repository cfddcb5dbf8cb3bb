"""What both memory widgets draw with: a front-end check, off-screen figures, HTML text.

The calculator (``widgets``) and the live monitor (``monitor``) share these, and neither
imports the other: the monitor subclasses transformers' ``TrainerCallback``, and the
calculator must stay importable without transformers.
"""

from __future__ import annotations

import io


def widgets_available() -> bool:
    """True when ipywidgets imports and we run in a Jupyter kernel (a widget front end).

    False in a plain ``python`` process, in a terminal IPython, and without ipywidgets.
    """
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def png(figure) -> bytes:
    """The figure as PNG bytes, for an ``ipywidgets.Image``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def new_figure(width: float, height: float):
    """A matplotlib figure that pyplot does not know (so it is never shown by itself)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def escape(text: str) -> str:
    """`text` safe inside HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
