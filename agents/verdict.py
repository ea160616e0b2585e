"""The critic's verdict threshold: where a model's probability of APPROVE becomes an approval.

A base model's constrained A/R choice carries a prior of its own (the embedded 270M one prefers one letter whatever
the answer, as it prefers option A in MCQA). Held to its shapes, the critic approves when its probability of A
reaches a threshold: the configured one (:attr:`CouncilConfig.approve_threshold`), else the one calibrated for the
served model (:data:`APPROVE_THRESHOLDS`: the "P(A) median" that ``medcouncil roles RUN`` prints for a council run
on items outside every reported set), else 0.5 (the more probable letter).
"""

from __future__ import annotations

from medcouncil.serving.client import Choice

APPROVE_THRESHOLDS: dict[str, float] = {"gemma-3-270m": 0.815}
"""Calibrated thresholds by served model name: the median probability of A of the critic's first decision on each
item of a calibration run, so that the prior of the letter no longer decides alone. ``gemma-3-270m``: the council on
the first 40 MedMCQA test items (``medcouncil bench --dataset medmcqa --limit 40 --mode council``, then
``medcouncil roles RUN``), where every verdict at 0.5 was APPROVE (P(A) from 0.60 to 0.93)."""


def approve_probability(choice: Choice) -> float:
    """The probability of A (approve) of a verdict choice: its probabilities where the engine gave them, else 1 or
    0 by the letter chosen."""
    if choice.probabilities:
        return choice.probabilities.get("A", 0.0)
    return 1.0 if choice.letter == "A" else 0.0


def approve_threshold(model: str, configured: float | None = None) -> float:
    """The threshold a verdict of ``model`` is held to (see the module's text)."""
    if configured is not None:
        return configured
    return APPROVE_THRESHOLDS.get(model, 0.5)
