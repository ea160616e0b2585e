"""The critic's verdict threshold: where a model's probability of APPROVE becomes an approval.

A base model's constrained A/R choice carries a prior of its own (the embedded 270M one prefers one letter whatever
the answer, as it prefers option A in MCQA). Held to its shapes, the critic approves when its probability of A
reaches a threshold: the configured one (:attr:`CouncilConfig.approve_threshold`), else the one calibrated for the
served model and the kind of review (:data:`APPROVE_THRESHOLDS`: the "P(A) median" that ``medcouncil roles RUN``
prints for a council run on items outside every reported set), else 0.5 (the more probable letter). A review that
is not shaped (a follow-up turn, an empty choice) is decided over its own text, where no calibration holds: 0.5.
"""

from __future__ import annotations

from typing import Literal

from medcouncil.serving.components import Choice

ReviewKind = Literal["answer", "step"]
"""What the critic reviews: an answer to a question (a chosen option of a multiple-choice item, or a free question's
differential and its final line), or a patient episode's step (the doctor's action). The prior of the letter differs
between the two."""

APPROVE_THRESHOLDS: dict[tuple[str, ReviewKind], float] = {
    ("gemma-3-270m", "answer"): 0.815,
    ("gemma-3-270m", "step"): 0.702,
}
"""Calibrated thresholds by served model name and review kind: the median probability of A of the critic's first
decision on each item (each step, in an episode) of a calibration run outside every reported set, so that the prior of
the letter no longer decides alone. ``gemma-3-270m``: answer, the council on the first 40 MedMCQA test items
(``medcouncil bench --dataset medmcqa --limit 40 --mode council``, then ``medcouncil roles RUN``), where every
verdict at 0.5 was APPROVE (P(A) from 0.60 to 0.93), also held by free questions (no calibration set of its own
yet); step, the council playing AgentClinic cases 21-25 as episodes (budget 6: 70 verdicts, P(A) from 0.49 to
0.79), where every verdict at the answer threshold was REVISE."""


def approve_probability(choice: Choice) -> float:
    """The probability of A (approve) of a verdict choice: its probabilities where the engine gave them, else 1 or
    0 by the letter chosen."""
    if choice.probabilities:
        return choice.probabilities.get("A", 0.0)
    return 1.0 if choice.letter == "A" else 0.0


def approve_threshold(model: str, kind: ReviewKind, configured: float | None = None) -> float:
    """The threshold a shaped verdict of ``model`` on a review of ``kind`` is held to (see the module's text)."""
    if configured is not None:
        return configured
    return APPROVE_THRESHOLDS.get((model, kind), 0.5)
