"""helpers.diagrams.deployment: the exits map names every file format and runtime."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from helpers.diagrams.canvas import texts  # noqa: E402
from helpers.diagrams.deployment import EXITS, plot_exits  # noqa: E402


def test_exits_map_names_each_format_and_runtime():
    figure = plot_exits()
    drawn = "\n".join(texts(figure))
    for file, runtime in EXITS:
        assert file in drawn and runtime in drawn
    assert "merge_and_unload" in drawn
    plt.close(figure)
