"""Pictures of a training run: the learning-rate schedule and the loss curves.

The schedule comes from transformers' own ``get_scheduler``, built from the same
``TrainingArguments``/``SFTConfig`` fields the ``Trainer`` reads, so the curve is the
one the trainer follows (a test checks it against the rates a real run logs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def learning_rates(args, num_training_steps: int | None = None) -> list[float]:
    """The learning rate of each optimizer step 1..N under `args` (an ``SFTConfig``).

    `num_training_steps` defaults to ``args.max_steps``; pass it when training by epochs.
    """
    import torch
    from transformers import get_scheduler

    steps = args.max_steps if num_training_steps is None else num_training_steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(
            f"num_training_steps={steps!r}: the schedule needs a positive number of steps; "
            "set max_steps in the config or pass num_training_steps."
        )
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=args.learning_rate)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(steps),
        num_training_steps=steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs or {},
    )
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def plot_schedule(args, num_training_steps: int | None = None):
    """The learning rate against the optimizer step, warm-up shaded."""
    import matplotlib.pyplot as plt

    rates = learning_rates(args, num_training_steps)
    steps = range(1, len(rates) + 1)
    warmup = args.get_warmup_steps(len(rates))
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(steps, rates, color="tab:blue")
    if warmup:
        ax.axvspan(0.5, warmup + 0.5, color="tab:orange", alpha=0.2, label=f"warm-up ({warmup})")
        ax.legend(loc="upper right")
    kind = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    ax.set_title(f"learning rate: {kind}, peak {args.learning_rate:g}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    fig.tight_layout()
    return fig


def loss_curves(log_history: Iterable[Mapping]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs of the training and the eval loss from ``trainer.state.log_history``."""
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for entry in log_history:
        if "loss" in entry:
            curves["train"].append((entry["step"], entry["loss"]))
        if "eval_loss" in entry:
            curves["eval"].append((entry["step"], entry["eval_loss"]))
    return curves


def plot_losses(log_history: Sequence[Mapping], title: str = "training and eval loss"):
    """Training and eval loss on one figure; says how to get an eval loss when there is none."""
    import matplotlib.pyplot as plt

    curves = loss_curves(log_history)
    if not curves["train"]:
        raise ValueError("The log history holds no training loss: train first (trainer.train()).")
    if not curves["eval"]:
        raise ValueError(
            "The log history holds no eval loss: pass eval_dataset= to the trainer and "
            "eval_strategy='steps' (with eval_steps) to the config."
        )
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, style in (("train", "o-"), ("eval", "s--")):
        steps, losses = zip(*curves[name], strict=True)
        ax.plot(steps, losses, style, label=f"{name} loss", markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
