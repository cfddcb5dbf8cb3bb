"""The order in which the course's trainer feeds training examples.

Batches of examples of similar lengths, in random order: padding nearly vanishes
and the first steps are still a fair sample of the data. The trainer
(``helpers.training``) uses ``BucketedSampler``; chapter 04 shows the idea and
imports the same names from ``helpers.batches``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def bucketed_order(
    lengths: Sequence[int], batch_size: int, *, seed: int = 0, bucket_batches: int = 50
) -> list[int]:
    """An epoch's order of examples whose batches hold examples of similar lengths.

    Shuffle; cut into buckets of `bucket_batches` batches; sort each bucket by length and
    cut it into batches; shuffle the batches. Padding nearly vanishes, and unlike
    transformers' ``LengthGroupedSampler`` (which sorts each bucket longest first) the
    batches come in random order: the first steps are a fair sample of the data, and
    the loss shows no long-to-short sawtooth.
    """
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError(
            f"batch_size={batch_size} and bucket_batches={bucket_batches} must be >= 1."
        )
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * bucket_batches
    batches = []
    for start in range(0, len(shuffled), bucket):
        ordered = sorted(shuffled[start : start + bucket], key=lambda i: lengths[i])
        batches += [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    # a short last batch stays last, where the DataLoader expects it
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [i for k in order for i in full[k]] + [i for b in short for i in b]


class BucketedSampler(torch.utils.data.Sampler):
    """A training sampler that yields :func:`bucketed_order`, a new shuffle each epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = bucketed_order(self.lengths, self.batch_size, seed=self.seed + self.epoch)
        self.epoch += 1
        return iter(order)
