"""helpers.diagrams.training: the schedule the trainer follows, and the loss curves."""

from __future__ import annotations

import math

import matplotlib
import pytest

import helpers
from helpers.diagrams.training import learning_rates, loss_curves, plot_losses, plot_schedule

matplotlib.use("Agg")


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    args = helpers.sft_config("unused", max_steps=20, learning_rate=1e-3)  # warm-up: 10%
    rates = learning_rates(args)
    assert len(rates) == 20 and args.get_warmup_steps(20) == 2
    assert rates[:3] == pytest.approx([0.0, 5e-4, 1e-3])
    # then half a cosine from the peak (step 3) towards zero (after step 20)
    for step in range(3, 21):
        progress = (step - 3) / 18
        assert rates[step - 1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))


def test_the_schedule_follows_the_config():
    args = helpers.sft_config(
        "unused", max_steps=10, learning_rate=2e-3, lr_scheduler_type="linear", warmup_steps=0
    )
    assert learning_rates(args) == pytest.approx([2e-3 * (10 - i) / 10 for i in range(10)])
    assert len(learning_rates(args, num_training_steps=4)) == 4
    with pytest.raises(ValueError, match="set max_steps"):
        learning_rates(helpers.sft_config("unused"))


def test_the_schedule_is_the_one_a_real_run_logs(yoda, tmp_path):
    """The curve must be the trainer's own: compare with the rates a tiny run logs."""
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    args = helpers.sft_config(
        str(tmp_path), max_steps=8, per_device_train_batch_size=2, logging_steps=1
    )
    trainer = helpers.build_trainer(
        model,
        tokenizer,
        yoda["train"].select(range(16)),
        args,
        peft_config=helpers.lora_config(r=2),
    )
    trainer.train()
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert logged == pytest.approx(learning_rates(args), abs=1e-12)


HISTORY = [
    {"step": 5, "loss": 2.0, "learning_rate": 1e-3},
    {"step": 10, "loss": 1.0},
    {"step": 10, "eval_loss": 1.5},
    {"step": 15, "loss": 0.5},
    {"step": 15, "eval_loss": 0.7},
    {"step": 15, "train_loss": 1.2},  # the summary line at the end of train() is not a point
]


def test_loss_curves_split_training_and_eval_points():
    curves = loss_curves(HISTORY)
    assert curves == {"train": [(5, 2.0), (10, 1.0), (15, 0.5)], "eval": [(10, 1.5), (15, 0.7)]}


def test_plot_losses_draws_both_curves_on_one_axis():
    fig = plot_losses(HISTORY)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["train loss"].get_ydata()) == [2.0, 1.0, 0.5]
    assert list(lines["eval loss"].get_xdata()) == [10, 15]


def test_plot_losses_without_an_eval_loss_says_how_to_get_one():
    with pytest.raises(ValueError, match="eval_dataset=.*eval_strategy"):
        plot_losses(HISTORY[:2])
    with pytest.raises(ValueError, match="train first"):
        plot_losses([])


def test_plot_schedule_draws_the_computed_rates():
    args = helpers.sft_config("unused", max_steps=30, learning_rate=2e-3)
    (ax,) = plot_schedule(args).axes
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == pytest.approx(learning_rates(args))
    assert "cosine" in ax.get_title() and "0.002" in ax.get_title()
