"""Ratings of contestants from pairwise battles, where a judge compares two answers: A wins, B wins, or a tie.

Bradley-Terry by maximum likelihood on the Elo scale with percentile-bootstrap intervals (as Chatbot Arena reports
it), plus a rating per dataset (as PULSE does): P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / scale)), scale 400.

Tie rule: a tie counts as half a win for each side (the Chatbot Arena convention). Battles are aggregated into a
wins matrix W (W[i, j]: wins of i over j, a tie adding 0.5 to both cells), so a fit costs the same for any number
of battles; the concave log-likelihood is maximised by Newton's method with a backtracking line search (about five
steps on ordinary data). Ratings are identified up to a shift: with ``anchor=None`` their mean is ``anchor_rating``;
with a named anchor, that contestant gets ``anchor_rating`` exactly.

The MLE diverges when a contestant won (or lost) every battle, or when two groups never met. A ridge penalty
RIDGE/2 * sum((theta - mean(theta)) ** 2) on the natural-log strengths theta = R * ln(10) / scale keeps every
rating finite: a Gaussian prior with a standard deviation of 1/sqrt(RIDGE) = 100 nats (~17,000 points), so weak
that it moves a rating by about RIDGE * theta / I (I: the contestant's Fisher information, ~0.2 per battle), under
0.01 point for a contestant 400 points off the mean with 100 battles. An unbeaten contestant still lands
1,500-2,000 points above the rest: read such a rating (and its interval) as "won everything", not as a measurement.

``bootstrap`` resamples battles with replacement as one multinomial draw over the distinct (a, b, outcome)
categories per round and fits all rounds as one batch. ``online_elo`` (sequential Elo) depends on the order of the
battles; it is reported only beside the Bradley-Terry fit, for comparison.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, model_validator

Float = NDArray[np.float64]

RIDGE = 1e-4
"""L2 penalty on the centred natural-log strengths (see the module docstring)."""
TOLERANCE = 1e-9
"""Newton stops once no log-strength moves by more than this (in nats: ~2e-7 rating points)."""
MAX_ITERATIONS = 200
MAX_HALVINGS = 40
MAX_SPREAD = 30.0
"""Log-strengths further apart than this (~5,200 points, a win probability of 1 - 1e-13) mean the MLE diverges."""
_SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}
_RESULTS = {"a": ("win", "loss"), "b": ("loss", "win"), "tie": ("tie", "tie")}


class Battle(BaseModel, frozen=True):
    """One judged comparison of contestant ``a`` with contestant ``b``."""

    a: str
    b: str
    outcome: Literal["a", "b", "tie"]
    dataset: str = ""
    item_id: str = ""

    @model_validator(mode="after")
    def _distinct(self) -> Battle:
        if self.a == self.b:
            raise ValueError(f"a battle needs two different contestants, got {self.a!r} on both sides")
        return self


class Rating(BaseModel, frozen=True):
    """One contestant's row: BT rating with its bootstrap interval, online Elo, record, per-dataset BT ratings."""

    contestant: str
    rating: float
    low: float
    high: float
    online: float
    battles: int
    wins: int
    losses: int
    ties: int
    by_dataset: dict[str, float]


def _listed(battles: Iterable[Battle]) -> list[Battle]:
    listed = list(battles)
    if not listed:
        raise ValueError("no battles to rate")
    return listed


def _categories(battles: list[Battle]) -> tuple[list[str], Float, Float]:
    """Sorted names, each distinct (a, b, outcome)'s contribution to the flattened wins matrix, and its count."""
    names = sorted({name for battle in battles for name in (battle.a, battle.b)})
    index = {name: i for i, name in enumerate(names)}
    counts = Counter((battle.a, battle.b, battle.outcome) for battle in battles)
    effect = np.zeros((len(counts), len(names), len(names)))
    for row, (a, b, outcome) in enumerate(counts):  # a tie: half a win each way
        effect[row, index[a], index[b]], effect[row, index[b], index[a]] = _SCORE[outcome], 1.0 - _SCORE[outcome]
    return names, effect.reshape(len(counts), -1), np.array(list(counts.values()), dtype=np.float64)


def _check(names: list[str], anchor: str | None, scale: float, ridge: float) -> None:
    if anchor is not None and anchor not in names:
        raise ValueError(f"unknown anchor {anchor!r}; the contestants are: {', '.join(names)}")
    if scale <= 0 or ridge < 0:
        raise ValueError(f"need scale > 0 and ridge >= 0, got scale={scale}, ridge={ridge}")


def _objective(theta: Float, wins: Float, ridge: float) -> Float:
    diff = theta[:, :, None] - theta[:, None, :]
    centred = theta - theta.mean(axis=1, keepdims=True)
    result: Float = -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2)) - 0.5 * ridge * (centred**2).sum(axis=1)
    return result


def _solve(wins: Float, ridge: float) -> Float:
    """Penalised MLE of the centred log-strengths for a batch of wins matrices (rounds, n, n) → (rounds, n)."""
    rounds, n, _ = wins.shape
    games = wins + wins.transpose(0, 2, 1)
    eye = np.eye(n)
    theta = np.zeros((rounds, n))
    for _ in range(MAX_ITERATIONS):
        p = 0.5 * (1.0 + np.tanh(0.5 * (theta[:, :, None] - theta[:, None, :])))  # P(i beats j), overflow-free
        grad = wins.sum(axis=2) - (games * p).sum(axis=2) - ridge * (theta - theta.mean(axis=1, keepdims=True))
        weight = games * p * (1.0 - p)
        # negative Hessian: the weighted graph Laplacian plus the centred ridge; both vanish on the all-ones
        # vector, so adding J/n makes the system invertible and leaves the (centred) Newton step unchanged
        system = eye * weight.sum(axis=2)[:, :, None] - weight + ridge * (eye - 1.0 / n) + 1.0 / n
        try:
            step = np.linalg.solve(system, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        current, slope, size = _objective(theta, wins, ridge), (grad * step).sum(axis=1), np.ones(rounds)
        for _ in range(MAX_HALVINGS):
            short = _objective(theta + size[:, None] * step, wins, ridge) < current + 1e-4 * size * slope
            if not short.any():
                break
            size = np.where(short, 0.5 * size, size)
        theta = theta + size[:, None] * step
        if not np.ptp(theta, axis=1).max() <= MAX_SPREAD:  # diverging (or NaN): no finite maximum
            break
        if np.abs(size[:, None] * step).max() < TOLERANCE:
            return theta
    raise ValueError("no finite MLE (a contestant won or lost every battle, or groups never met): use ridge > 0")


def _ratings(theta: Float, names: list[str], anchor: str | None, anchor_rating: float, scale: float) -> Float:
    ratings = theta * (scale / math.log(10.0))
    base = ratings.mean(axis=1, keepdims=True) if anchor is None else ratings[:, [names.index(anchor)]]
    result: Float = ratings - base + anchor_rating
    return result


def fit(
    battles: Iterable[Battle],
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
    ridge: float = RIDGE,
) -> dict[str, float]:
    """Bradley-Terry ratings by (ridge-penalised) maximum likelihood, ties as half a win for each side.

    With ``anchor=None`` the mean rating is ``anchor_rating``; otherwise the named contestant gets it exactly.
    ``ridge=0`` gives the plain MLE, which exists only when every split of the contestants into two groups has a
    win (or tie) each way: ValueError otherwise. Raises ValueError on no battles or an unknown anchor.
    """
    names, effect, counts = _categories(_listed(battles))
    _check(names, anchor, scale, ridge)
    wins = (counts @ effect).reshape(1, len(names), len(names))
    ratings = _ratings(_solve(wins, ridge), names, anchor, anchor_rating, scale)[0]
    return dict(zip(names, ratings.tolist(), strict=True))


def bootstrap(
    battles: Iterable[Battle],
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
    ridge: float = RIDGE,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of the ``fit`` ratings (same keyword arguments), as (low, high).

    Each round resamples the battles with replacement (a multinomial draw over the distinct (a, b, outcome)
    categories, from ``numpy.random.default_rng(seed)``) and refits; all rounds are solved as one batch.
    """
    if rounds < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need rounds >= 1 and 0 < level < 1, got rounds={rounds}, level={level}")
    names, effect, counts = _categories(_listed(battles))
    _check(names, anchor, scale, ridge)
    draws = np.random.default_rng(seed).multinomial(int(counts.sum()), counts / counts.sum(), size=rounds)
    wins = (draws.astype(np.float64) @ effect).reshape(rounds, len(names), len(names))
    ratings = _ratings(_solve(wins, ridge), names, anchor, anchor_rating, scale)
    low, high = np.quantile(ratings, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}


def online_elo(
    battles: Iterable[Battle], k: float = 4.0, initial: float = 1000.0, scale: float = 400.0
) -> dict[str, float]:
    """Classic sequential Elo over the battles in the given order (ties score 0.5), every contestant from ``initial``.

    The result depends on the order of the battles: it is reported only beside the Bradley-Terry fit.
    """
    ratings: dict[str, float] = {}
    for battle in _listed(battles):
        ra, rb = ratings.setdefault(battle.a, initial), ratings.setdefault(battle.b, initial)
        delta = k * (_SCORE[battle.outcome] - 1.0 / (1.0 + 10.0 ** ((rb - ra) / scale)))
        ratings[battle.a], ratings[battle.b] = ra + delta, rb - delta
    return dict(sorted(ratings.items()))


def win_rates(battles: Iterable[Battle]) -> dict[str, dict[str, float | None]]:
    """``result[a][b]``: the share of the a-b battles that a won (ties half), None where a and b never met."""
    names, effect, counts = _categories(_listed(battles))
    wins = (counts @ effect).reshape(len(names), len(names))
    games = wins + wins.T
    return {
        a: {b: float(wins[i, j] / games[i, j]) if games[i, j] else None for j, b in enumerate(names) if j != i}
        for i, a in enumerate(names)
    }


def rate(
    battles: Iterable[Battle],
    anchor: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    k: float = 4.0,
) -> list[Rating]:
    """Every contestant's ``Rating``, best first: ``fit``, ``bootstrap``, ``online_elo``, record and datasets.

    ``by_dataset`` holds the BT rating fitted on each named dataset's battles alone (battles with an empty dataset
    count only overall), with the same anchor rule; where the anchor took no part in a dataset, that column is
    anchored on its mean instead. A contestant absent from a dataset has no entry for it.
    """
    listed = _listed(battles)
    point = fit(listed, anchor=anchor)
    intervals = bootstrap(listed, rounds, seed, level, anchor=anchor)
    online = online_elo(listed, k=k)
    columns: dict[str, dict[str, float]] = {}
    for dataset in sorted({battle.dataset for battle in listed} - {""}):
        subset = [battle for battle in listed if battle.dataset == dataset]
        present = {name for battle in subset for name in (battle.a, battle.b)}
        columns[dataset] = fit(subset, anchor=anchor if anchor in present else None)
    record = Counter(
        (name, result)
        for battle in listed
        for name, result in zip((battle.a, battle.b), _RESULTS[battle.outcome], strict=True)
    )
    rows = [
        Rating(
            contestant=name,
            rating=rating,
            low=intervals[name][0],
            high=intervals[name][1],
            online=online[name],
            battles=record[name, "win"] + record[name, "loss"] + record[name, "tie"],
            wins=record[name, "win"],
            losses=record[name, "loss"],
            ties=record[name, "tie"],
            by_dataset={dataset: column[name] for dataset, column in columns.items() if name in column},
        )
        for name, rating in point.items()
    ]
    return sorted(rows, key=lambda row: (-row.rating, row.contestant))
