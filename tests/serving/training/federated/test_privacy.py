"""The client-level ε of central DP: the analytic Gaussian's published value, the privacy-loss distribution sampled,
exact composition, and the degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medcouncil.serving.training.federated.privacy import composed_mu, epsilon, gdp_delta, round_noise


def test_one_release_matches_the_analytic_gaussian_mechanism() -> None:
    # Balle and Wang (2018): sensitivity 1 and sigma 3.73 give (1, 1e-5)-DP; the classical bound needs sigma 4.84
    assert epsilon([3.73], 1e-5) == pytest.approx(1.0, abs=0.005)
    assert epsilon([4.84], 1e-5) < 0.8


def test_delta_is_the_expectation_of_the_privacy_loss_tail() -> None:
    # the privacy loss of a Gaussian with mu = 1/sigma is N(mu^2/2, mu^2): delta(eps) = E[(1 - e^(eps - L))+]
    rng = np.random.default_rng(0)
    for mu, eps in ((1.0, 1.5), (0.5, 0.2), (2.0, 3.0)):
        loss = rng.normal(mu * mu / 2, mu, 2_000_000)
        sampled = float(np.mean(np.clip(1 - np.exp(eps - loss), 0, None)))
        assert gdp_delta(mu, eps) == pytest.approx(sampled, rel=0.02)


def test_rounds_compose_exactly() -> None:
    # four releases of sigma 1 are one release of sigma 1/2; the spend grows with every round
    assert epsilon([1.0] * 4, 1e-5) == pytest.approx(epsilon([0.5], 1e-5), rel=1e-6)
    spent = [epsilon([1.0] * rounds, 1e-5) for rounds in range(1, 6)]
    assert spent == sorted(spent) and len(set(spent)) == 5
    assert composed_mu([1.0, 2.0]) == pytest.approx(math.sqrt(1 + 0.25))


def test_degenerate_cases() -> None:
    assert epsilon([], 1e-5) == 0.0
    assert math.isinf(epsilon([1.0, 0.0], 1e-5))  # a release without noise: no guarantee
    assert epsilon([1e6], 0.5) == 0.0
    with pytest.raises(ValueError, match="delta"):
        epsilon([1.0], 0.0)


def test_a_round_over_more_clients_than_configured_has_more_noise_per_client() -> None:
    assert round_noise(2.0, denominator=3, sample_size=3) == 2.0
    assert round_noise(2.0, denominator=4, sample_size=2) == 4.0
