"""Judges of the arena: which of two answers to one open-ended question is better, A, B or a tie.

- :class:`ModelJudge` asks a judge model (any OpenAI-compatible endpoint) a constrained choice among A, B and T
  (:data:`prompts.ARENA_JUDGE`), with the item, its reference answer when it has one and both answers fenced as
  data. Every pair is judged in both orders; when the two orders disagree the pair is a tie, and the disagreement is
  kept (``consistent``) so that the report can give the judge's position consistency.
- :class:`ReferenceJudge` is deterministic: each answer is scored against the reference (1 when it names the
  reference or an accepted alias as whole words, else the share of the reference's words it contains); the higher
  score wins and equal scores tie. It cannot judge an item without a reference, and favours long answers that happen
  to contain the reference's words: it is a floor and a check on the model judge, not a judge of quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from autogen_core.models import UserMessage
from pydantic import BaseModel

from medcouncil.agents import prompts
from medcouncil.agents.judge import normalise
from medcouncil.agents.protocol import ChatModel
from medcouncil.tools.untrusted import fence

Outcome = Literal["first", "second", "tie"]
"""The verdict on a pair in the order it was given: the first answer wins, the second, or neither."""
SIDES = ("A", "B", "T")
ANSWER_CHARS = 2400
"""Each answer is cut to this many characters in the judge's prompt, keeping its head and its tail (where a final
answer usually is): a looping answer would fill the context."""


class JudgeFailed(RuntimeError):
    """The judge gave no usable verdict (no valid choice, an error): the pair is judged again on resume."""


class NoReference(ValueError):
    """A judge that needs a reference answer was given an item without one."""


class Judged(BaseModel):
    """One judge's verdict on one pair."""

    outcome: Outcome
    orders: list[str]
    """The judge's raw choices, one per order shown: first answer as A, then (when asked) second answer as A."""
    consistent: bool
    """Whether the orders agree (always true for a judge that sees one order only)."""
    reason: str = ""


class PairJudge(Protocol):
    name: str

    async def judge(self, question: str, references: Sequence[str], first: str, second: str, key: str = "") -> Judged:
        """The verdict on ``first`` against ``second``; ``key`` names the pairing (item and contestants) for judges
        that draw something per pair."""
        ...


AS_SHOWN: dict[str, Outcome] = {"A": "first", "B": "second", "T": "tie"}
"""A side chosen → the outcome, when the first answer was shown as A."""
SWAPPED: dict[str, Outcome] = {"A": "second", "B": "first", "T": "tie"}
"""The same when the second answer was shown as A."""


def clip(text: str) -> str:
    """``text`` within :data:`ANSWER_CHARS`: its head and tail around an ellipsis."""
    text = text.strip() or "(no answer)"
    if len(text) <= ANSWER_CHARS:
        return text
    half = (ANSWER_CHARS - 3) // 2
    return f"{text[:half]} … {text[-half:]}"


class ModelJudge:
    """A judge model's constrained A/B/T choice, asked in both orders."""

    def __init__(self, model: ChatModel, name: str | None = None) -> None:
        self.model = model
        self.name = name or f"model:{model.name}"

    async def _ask(self, question: str, reference: str, a: str, b: str) -> str:
        prompt = prompts.ARENA_JUDGE.format(
            question=fence(question), reference=reference, a=fence(clip(a)), b=fence(clip(b))
        )
        choice = await self.model.choose([UserMessage(content=prompt, source="user")], list(SIDES))
        if choice.letter in SIDES:
            return choice.letter
        if choice.probabilities:  # the engine ignored the constraint but scored the sides: the likeliest one
            return max(SIDES, key=lambda side: (choice.probabilities or {}).get(side, 0.0))
        raise JudgeFailed(f"judge {self.name} gave no valid choice among A, B, T")

    async def judge(self, question: str, references: Sequence[str], first: str, second: str, key: str = "") -> Judged:
        reference = fence(references[0]) if references else prompts.ARENA_NO_REFERENCE
        shown_first = await self._ask(question, reference, first, second)
        shown_second = await self._ask(question, reference, second, first)
        one, two = AS_SHOWN[shown_first], SWAPPED[shown_second]
        consistent = one == two
        outcome: Outcome = one if consistent else "tie"
        reason = f"{shown_first} with the first answer as A, {shown_second} with it as B"
        return Judged(outcome=outcome, orders=[shown_first, shown_second], consistent=consistent, reason=reason)


def reference_score(answer: str, references: Sequence[str]) -> float:
    """1.0 when ``answer`` names a reference as whole words (after :func:`~medcouncil.agents.judge.normalise`),
    else the largest share of a reference's distinct words that ``answer`` contains."""
    given = normalise(answer)
    words = set(given.split())
    best = 0.0
    for reference in references:
        wanted = normalise(reference)
        if not wanted:
            continue
        if f" {wanted} " in f" {given} ":
            return 1.0
        tokens = set(wanted.split())
        best = max(best, len(tokens & words) / len(tokens))
    return best


class ReferenceJudge:
    """Deterministic: the answer that matches the reference better wins; equal matches tie."""

    name = "reference"

    async def judge(self, question: str, references: Sequence[str], first: str, second: str, key: str = "") -> Judged:
        if not any(normalise(reference) for reference in references):
            raise NoReference("the reference judge needs a reference answer")
        one, two = reference_score(first, references), reference_score(second, references)
        outcome: Outcome = "tie" if abs(one - two) < 1e-9 else ("first" if one > two else "second")
        side = {"first": "A", "second": "B", "tie": "T"}[outcome]
        return Judged(outcome=outcome, orders=[side], consistent=True, reason=f"reference match {one:.2f} vs {two:.2f}")
