"""Metrics for MCQA runs: never a bare mean.

Accuracy with a percentile-bootstrap 95% confidence interval, macro-F1 over the option letters, the invalid-answer
count, and the paired McNemar test between two answerers on the same items (exact binomial on the discordant pairs).
Errors (the model could not be reached) are not answers: callers leave them out before scoring.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel


class Accuracy(BaseModel):
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    macro_f1: float
    invalid: int
    """Predictions that are not a letter (None)."""


def bootstrap_ci(
    hits: Sequence[bool], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``hits``."""
    if not hits:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(hits)
    means = sorted(sum(hits[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * (resamples - 1))], means[int((1 - tail) * (resamples - 1))]


def macro_f1(golds: Sequence[str], predictions: Sequence[str | None]) -> float:
    """F1 per gold letter (an invalid prediction counts as wrong), averaged over the letters seen in gold."""
    scores = []
    for letter in sorted(set(golds)):
        tp = sum(g == letter and p == letter for g, p in zip(golds, predictions, strict=True))
        fp = sum(g != letter and p == letter for g, p in zip(golds, predictions, strict=True))
        fn = sum(g == letter and p != letter for g, p in zip(golds, predictions, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def accuracy(golds: Sequence[str], predictions: Sequence[str | None], seed: int = 0) -> Accuracy:
    hits = [g == p for g, p in zip(golds, predictions, strict=True)]
    low, high = bootstrap_ci(hits, seed=seed)
    return Accuracy(
        n=len(hits),
        correct=sum(hits),
        accuracy=sum(hits) / len(hits) if hits else 0.0,
        ci_low=low,
        ci_high=high,
        macro_f1=macro_f1(golds, predictions),
        invalid=sum(p is None for p in predictions),
    )


class McNemar(BaseModel):
    only_first: int
    """Items the first answerer got right and the second wrong."""
    only_second: int
    p_value: float


def mcnemar(first: Sequence[bool], second: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test on paired correctness."""
    b = sum(x and not y for x, y in zip(first, second, strict=True))
    c = sum(y and not x for x, y in zip(first, second, strict=True))
    n = b + c
    if n == 0:
        return McNemar(only_first=b, only_second=c, p_value=1.0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return McNemar(only_first=b, only_second=c, p_value=min(1.0, 2 * tail))
