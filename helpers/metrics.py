"""Metrics no maintained library gives in the form the course needs.

BLEU/chrF come from ``sacrebleu``, ROUGE-L from ``rouge-score``, accuracy, macro-F1 and
confusion matrices from ``scikit-learn`` (chapter 07 calls them in the open). What lives
here is what those libraries do not do: a lenient exact match, scores per sentence shape,
a paired bootstrap for the difference between two models scored on the same examples,
a share with its Wilson interval (for the small held-out sets of chapters 10 and 12),
mapping a generated answer onto a fixed label set, and word n-gram overlap between two
splits (a cheap contamination check).
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .evaluation import normalize

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, collapse whitespace (``evaluation.normalize``).

    Lenient on purpose: "Dark, the cave is." and "dark the cave is" become equal, so a
    metric built on it forgives capitals and commas but not a wrong word or word order.
    """
    return normalize(text.lower().translate(_PUNCTUATION))


def normalized_exact_match(prediction: str, reference: str) -> bool:
    """True when the answers are equal after ``normalize_answer``."""
    return normalize_answer(prediction) == normalize_answer(reference)


def per_shape(scores: Sequence[float], shapes: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Mean score and count per shape: ``{shape: (mean, n)}``, shapes sorted by name."""
    if len(scores) != len(shapes):
        raise ValueError(f"{len(scores)} scores but {len(shapes)} shapes: give one shape a score.")
    groups: dict[str, list[float]] = defaultdict(list)
    for score, shape in zip(scores, shapes, strict=True):
        groups[shape].append(float(score))
    return {s: (sum(v) / len(v), len(v)) for s, v in sorted(groups.items())}


@dataclass(frozen=True)
class Difference:
    """Mean of b minus mean of a on the same examples, with a bootstrap interval."""

    difference: float
    low: float
    high: float
    confidence: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is not noise)."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.difference:+.3f} [{pct}% CI {self.low:+.3f}, {self.high:+.3f}] (n={self.n})"


@dataclass(frozen=True)
class Rate:
    """A share of hits with its Wilson 95% interval (scipy): how sure a rate on n examples is."""

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        from scipy.stats import binomtest

        ci = binomtest(self.hits, self.n).proportion_ci(confidence_level=0.95, method="wilson")
        return ci.low, ci.high

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.hits:>3}/{self.n:<3} = {self.value:.2f} [95% CI {low:.2f}, {high:.2f}]"


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of already sorted values."""
    position = q * (len(sorted_values) - 1)
    below = int(position)
    above = min(below + 1, len(sorted_values) - 1)
    weight = position - below
    return sorted_values[below] * (1 - weight) + sorted_values[above] * weight


def paired_bootstrap(
    a: Sequence,
    b: Sequence,
    *,
    statistic: Callable[[list], float] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Paired bootstrap of statistic(b) - statistic(a), where a[i] and b[i] are the same example.

    `statistic` turns a list of per-example items into one number; by default the mean
    (items are scores: 1/0 for a hit, a BLEU or chrF per answer). For a score that is not
    a mean of per-example scores, such as macro-F1, pass items like (label, answer) and a
    statistic that computes it. Each resample draws n example indices with replacement
    and takes the difference on those examples; the interval is the central `confidence`
    share of the resampled differences. Pairing matters: both models meet the same easy
    and hard examples in every resample, so the interval is narrower than two separate ones.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}.")
    if not a:
        raise ValueError("no scores: the bootstrap needs at least one example.")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples at least 1.")
    n = len(a)
    a, b = list(a), list(b)
    rng = random.Random(seed)
    if statistic is None:  # the common case, fast: the mean of the per-example differences
        deltas = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
        observed = sum(deltas) / n
        draws = [sum(deltas[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    else:
        observed = statistic(b) - statistic(a)
        draws = []
        for _ in range(resamples):
            idx = [rng.randrange(n) for _ in range(n)]
            draws.append(statistic([b[i] for i in idx]) - statistic([a[i] for i in idx]))
    draws.sort()
    tail = (1 - confidence) / 2
    return Difference(observed, _quantile(draws, tail), _quantile(draws, 1 - tail), confidence, n)


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label a generated answer names, or None when it names none (or more than one).

    Compared after ``normalize_answer``: "Statements." and "statements" both give
    "statements". An answer that only contains a label inside a longer text counts as
    outside the label set: the task asked for the label alone.
    """
    wanted = {normalize_answer(label): label for label in labels}
    return wanted.get(normalize_answer(answer))


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of n-word sequences of `text` (after ``normalize_answer``)."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1.")
    words = normalize_answer(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(text: str, seen: set[tuple[str, ...]], n: int) -> float:
    """Share of the n-grams of `text` that occur in `seen` (0.0 for a text shorter than n)."""
    grams = word_ngrams(text, n)
    return len(grams & seen) / len(grams) if grams else 0.0


def contamination(train: Iterable[str], test: Iterable[str], n: int = 8) -> list[float]:
    """For each test text, the share of its word n-grams that also occur in the training texts.

    1.0 means every n-word window of the test text is somewhere in the training set (a
    near duplicate); long n-grams (8 words and more) rarely repeat by chance in real text.
    """
    seen: set[tuple[str, ...]] = set()
    for text in train:
        seen |= word_ngrams(text, n)
    return [ngram_overlap(text, seen, n) for text in test]
