"""Metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from medcouncil.scenarios.bench.metrics import accuracy, bootstrap_ci, macro_f1, mcnemar


def test_accuracy_f1_and_invalid_by_hand() -> None:
    golds = ["A", "A", "B", "B", "C"]
    predictions = ["A", "B", "B", None, "C"]
    result = accuracy(golds, predictions)
    assert (result.n, result.correct, result.invalid) == (5, 3, 1)
    assert result.accuracy == pytest.approx(0.6)
    # A: tp1 fp0 fn1 → 2/3; B: tp1 fp1 fn1 → 1/2; C: tp1 → 1; mean = 13/18
    assert result.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result.ci_low <= 0.6 <= result.ci_high


def test_bootstrap_interval_shrinks_with_n_and_is_degenerate_when_constant() -> None:
    assert bootstrap_ci([True] * 20) == (1.0, 1.0)
    small = bootstrap_ci([True, False] * 10)
    large = bootstrap_ci([True, False] * 500)
    assert small[0] < large[0] < 0.5 < large[1] < small[1]
    assert macro_f1([], []) == 0.0


def test_mcnemar_exact_by_hand() -> None:
    first = [True] * 6 + [False] * 1 + [True] * 3
    second = [False] * 6 + [True] * 1 + [True] * 3
    result = mcnemar(first, second)
    assert (result.only_first, result.only_second) == (6, 1)
    # two-sided exact: 2 * P(X <= 1 | n=7, p=.5) = 2 * (1 + 7) / 128
    assert result.p_value == pytest.approx(16 / 128)
    assert mcnemar([True, False], [True, False]).p_value == 1.0
