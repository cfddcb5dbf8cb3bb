"""helpers.diagrams.preference: the DPO flow picture and the training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.diagrams import canvas, preference  # noqa: E402

LOG = [
    {
        "loss": 0.69,
        "rewards/margins": 0.0,
        "rewards/accuracies": 0.0,
        "logps/chosen": -10.0,
        "logps/rejected": -12.0,
        "rewards/chosen": 0.0,
        "rewards/rejected": 0.0,
        "step": 2,
    },
    {
        "loss": 0.40,
        "rewards/margins": 0.5,
        "rewards/accuracies": 0.75,
        "logps/chosen": -9.0,
        "logps/rejected": -16.0,
        "rewards/chosen": 0.1,
        "rewards/rejected": -0.4,
        "step": 4,
    },
    {"train_runtime": 3.0, "step": 4},
]


def test_dpo_flow_names_policy_reference_and_beta():
    text = " ".join(canvas.texts(preference.dpo_flow(beta=0.25)))
    plt.close("all")
    assert "adapter 'ref'" in text and "adapter 'default'" in text
    assert "0.25 x" in text


def test_dpo_curves_reads_the_logged_metrics():
    curves = preference.dpo_curves(LOG)
    assert curves["rewards/margins"] == [(2, 0.0), (4, 0.5)]
    assert curves["logps/rejected"] == [(2, -12.0), (4, -16.0)]


def test_plot_dpo_curves_shows_log_ratios_not_rewards():
    fig = preference.plot_dpo_curves(LOG, beta=0.1)
    ratio_axis = fig.axes[3]
    chosen = ratio_axis.get_lines()[0].get_ydata()
    plt.close("all")
    assert list(chosen) == pytest.approx([0.0, 1.0])  # reward 0.1 / beta 0.1


def test_plot_dpo_curves_needs_a_trained_log():
    with pytest.raises(ValueError, match="train first"):
        preference.plot_dpo_curves([{"train_runtime": 1.0, "step": 0}], beta=0.1)
