"""The privacy a central-DP federated run spent: client-level (ε, δ) of its composed Gaussian releases.

Each round releases the sum of the clients' clipped updates (L2 norm ≤ C each) divided by a fixed denominator D,
plus Gaussian noise of standard deviation σ·C/n (Flower's server-side fixed clipping, n the configured sample
size): the fixed-denominator estimator of DP-FedAvg (McMahan et al., 2018), so adding or removing one client moves
the release by at most C/D whoever finishes, and the round is a Gaussian mechanism of noise multiplier σ·D/n
(σ itself when D = n, the usual case; D is larger only when more clients were sampled than configured). The
adapters are what is protected: the losses, counts and scores a run card records are published without noise.

A Gaussian mechanism of multiplier σ_t is exactly μ_t-GDP with μ_t = 1/σ_t, and T of them compose exactly to μ-GDP
with μ = √Σμ_t² (Dong, Roth and Su, "Gaussian Differential Privacy", 2019; the exact (ε, δ) curve of a Gaussian is
Balle and Wang's analytic Gaussian mechanism, 2018). So ε at a given δ is computed exactly, not bounded: the
smallest ε with δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2) ≤ δ. No amplification by client sampling is claimed
(conservative when ``fraction`` < 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _log_phi(x: float) -> float:
    """log Φ(x), the standard normal CDF, without underflow far in the lower tail."""
    if x > -30:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2)))
    # Φ(x) ≈ φ(x)/|x| (1 − 1/x²) for x → −∞
    return -0.5 * x * x - math.log(-x) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / (x * x))


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of a μ-GDP mechanism (the exact trade-off of a Gaussian of sensitivity 1 and noise 1/μ)."""
    first = 0.5 * math.erfc(-(-epsilon / mu + mu / 2) / math.sqrt(2))
    second = math.exp(epsilon + _log_phi(-epsilon / mu - mu / 2))
    return max(0.0, first - second)


def composed_mu(noise_multipliers: Sequence[float]) -> float:
    """μ of the composition of Gaussian releases with these noise multipliers (inf if one had no noise)."""
    if any(sigma <= 0 for sigma in noise_multipliers):
        return math.inf
    return math.sqrt(sum(1 / (sigma * sigma) for sigma in noise_multipliers))


def epsilon(noise_multipliers: Sequence[float], delta: float) -> float:
    """The smallest ε for which the composed releases are (ε, δ)-DP; 0 for no release, inf without noise.

    Raises:
        ValueError: δ not in (0, 1).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), not {delta}")
    if not noise_multipliers:
        return 0.0
    mu = composed_mu(noise_multipliers)
    if math.isinf(mu):
        return math.inf
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    low, high = 0.0, 1.0
    while gdp_delta(mu, high) > delta:
        low, high = high, high * 2
        if high > 1e6:
            return math.inf
    for _ in range(200):
        middle = (low + high) / 2
        if gdp_delta(mu, middle) > delta:
            low = middle
        else:
            high = middle
        if high - low < 1e-9 * max(1.0, high):
            break
    return high


def round_noise(noise_multiplier: float, denominator: int, sample_size: int) -> float:
    """The noise multiplier of one round's release: σ·D/n for the fixed denominator D and the configured sample
    size n (the noise's standard deviation is σ·C/n, one client's reach C/D)."""
    return noise_multiplier * denominator / max(1, sample_size)
