"""The course's benchmark: how fast its recipe fine-tunes, and how far that is from the limit.

``make bench`` (``python -m tools.bench``) measures, side by side in one run, on the
same model and the same text, and writes ``bench/results.json`` and ``bench/results.md``:

1. useful tokens per second of the course's recipe against the classic one
   (:mod:`.recipes` defines both, and what a useful token is);
2. utilization: the training FLOP/s achieved (counted as :mod:`.flops` explains) divided
   by the fastest matrix multiply of the same machine in the same dtype (:mod:`.matmul`);
3. peak memory of a training step in both recipes, and the 4-bit model's footprint
   against fp32;
4. time to quality: how long chapter 00's recipe trains before it reaches 80% exact
   match (:mod:`.quality`);
5. the whole course: ``python -m tools.bench course`` executes every chapter
   (:mod:`.course`, tens of minutes) and adds the result to the table.

It also flips one default at a time (the loss head, batch order, packing, padding, checkpointing,
attention, batch size, 4-bit, autocast; :mod:`.variants` says how each is judged), so that
each default of the helpers rests on a measured number, and races a *proposed* CPU recipe
beside the default one.

The machine may be shared with other work, so the recipes being compared train at the
same time, their steps interleaved, with a matmul probe taking its turn between them
(:class:`.recipes.Turnstile`): a burst of load slows all of them alike, and utilization
is computed against the peak measured in the same moments. Figures are medians over the
timed steps. ``--quick`` with ``--model tiny-random-smollm2`` runs every code path in
under a minute (what the tests do); its figures mean nothing.
"""

from __future__ import annotations

from .flops import MatmulShape, StepFlops, matmul_shape, training_step_flops

__all__ = ["MatmulShape", "StepFlops", "matmul_shape", "training_step_flops", "main"]


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)
