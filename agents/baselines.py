"""Baselines that reason before answering, for an equal-budget comparison with the council.

``cot``: the same model reasons once with the diagnostician's token budget, then makes the constrained choice with
the one choice template (``tools/mcqa.MCQA_TEMPLATE``, reasoning in its slot): what the council does, without the
other roles. ``sc`` (self-consistency): k sampled reasonings, each ending in a constrained choice; the majority
letter wins, ties broken by the summed choice probabilities. Published comparisons find that multi-agent set-ups
often do not beat these at the same budget, so the benchmark reports them beside the council.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from autogen_core.models import LLMMessage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.calls import (
    act_after_reasoning,
    choose_after_reasoning,
    final_answer,
    reply_shape,
    stream_model,
)
from medcouncil.agents.protocol import (
    Answerer,
    ChatModel,
    Episode,
    Event,
    Question,
    TokenEvent,
    Turn,
    TurnEvent,
    run_episode,
)
from medcouncil.agents.roles import options_block
from medcouncil.serving.components import Choice
from medcouncil.tools.untrusted import fence

SC_TEMPERATURE = 0.7
"""Sampling temperature of the self-consistency reasonings (each sample has its own seed: reruns agree)."""


def _messages(question: Question) -> list[LLMMessage]:
    task = prompts.COT_TASK.format(question=fence(question.text.strip()), options=options_block(question.options))
    return [SystemMessage(content=prompts.COT_SYSTEM), UserMessage(content=task, source="user")]


async def _reason_and_choose(
    model: ChatModel, question: Question, turn: Turn, max_tokens: int, **sampling: float | int
) -> AsyncIterator[str]:
    """Stream one reasoning into ``turn``, then (with options) the constrained choice into ``turn.choice``."""
    async for chunk in stream_model(model, _messages(question), turn, max_tokens=max_tokens, **sampling):
        yield chunk
    if question.options:
        yield await choose_after_reasoning(model, question.text, question.options, turn)


def _one_turn(name: str, question: Question, answer: str, turn: Turn, started: float) -> Episode:
    """The episode of an answerer of one turn, its choice (if any) in ``turn.choice``."""
    choice = turn.choice
    return Episode(
        question=question,
        answerer=name,
        case_en=question.text,
        answer=answer,
        answer_en=answer,
        letter=choice.letter if choice else None,
        probabilities=choice.probabilities if choice else None,
        turns=[turn],
        wall_time_s=time.perf_counter() - started,
    )


class ChainOfThought:
    """The single model reasoning first (one reasoning, one constrained choice)."""

    name = "cot"

    def __init__(self, model: ChatModel, max_tokens: int = 256) -> None:
        self.model = model
        self.max_tokens = max_tokens

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        turn = Turn(agent=self.name, content="", kind="answer")
        async for chunk in _reason_and_choose(self.model, question, turn, self.max_tokens):
            yield TokenEvent(agent=self.name, text=chunk)
        answer = turn.content
        if not question.options and (shape := reply_shape(question.reply, self.model)):
            answer = await act_after_reasoning(self.model, question.text, shape, turn)
            yield TokenEvent(agent=self.name, text=f"\n\n{answer}")
        turn.latency_s = time.perf_counter() - started
        yield TurnEvent(turn=turn)
        yield _one_turn(self.name, question, answer, turn, started)


def vote(choices: Sequence[Choice]) -> tuple[str | None, dict[str, float] | None]:
    """Majority letter (ties: the highest summed probability, then the first letter) and the mean distribution."""
    letters = [c.letter for c in choices if c.letter]
    if not letters:
        return None, None
    summed: dict[str, float] = {}
    for choice in choices:
        for letter, p in (choice.probabilities or {}).items():
            summed[letter] = summed.get(letter, 0.0) + p
    counts = Counter(letters)
    best = max(counts.values())
    tied = sorted(letter for letter, n in counts.items() if n == best)
    winner = max(tied, key=lambda letter: (summed.get(letter, 0.0), -ord(letter[0])))
    total = sum(summed.values())
    return winner, ({k: v / total for k, v in sorted(summed.items())} if total else None)


class SelfConsistency:
    """k sampled chain-of-thought answers, majority vote (Wang et al., 2023)."""

    name = "sc"

    def __init__(
        self, model: ChatModel, k: int = 3, max_tokens: int = 256, temperature: float = SC_TEMPERATURE
    ) -> None:
        if k < 1:
            raise ValueError("self-consistency needs k >= 1 samples")
        self.model, self.k, self.max_tokens, self.temperature = model, k, max_tokens, temperature

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        turns: list[Turn] = []
        for sample in range(self.k):
            t0 = time.perf_counter()
            turn = Turn(agent=f"{self.name}-{sample + 1}", content="", kind="answer")
            async for chunk in _reason_and_choose(
                self.model, question, turn, self.max_tokens, temperature=self.temperature, seed=sample
            ):
                yield TokenEvent(agent=turn.agent, text=chunk)
            turn.latency_s = time.perf_counter() - t0
            turns.append(turn)
            yield TurnEvent(turn=turn)
        letter, probabilities = vote([t.choice for t in turns if t.choice is not None])
        votes = Counter(t.choice.letter for t in turns if t.choice and t.choice.letter)
        summary = ", ".join(f"{k} x{n}" for k, n in sorted(votes.items())) or "no valid letter"
        answer = f"Votes: {summary}. Final answer: {letter}" if letter else f"Votes: {summary}."
        yield Episode(
            question=question,
            answerer=self.name,
            case_en=question.text,
            answer=answer,
            answer_en=answer,
            letter=letter,
            probabilities=probabilities,
            turns=turns,
            wall_time_s=time.perf_counter() - started,
        )


class CyclicDebias:
    """Option-order debiasing by cyclic permutation: the inner answerer sees the options in each of their n
    rotations; each option's probabilities are mapped back and averaged (n times the cost). A model that prefers a
    position (the embedded Gemma picks "A") then has to prefer an option's content to pick it."""

    def __init__(self, inner: Answerer, name: str = "single+cyclic") -> None:
        self.inner, self.name = inner, name

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        if not question.options:
            async for event in self.inner.stream(question, history):
                yield event
            return
        letters = list(question.options)
        n = len(letters)
        mean = dict.fromkeys(letters, 0.0)
        turns: list[Turn] = []
        for rotation in range(n):
            order = letters[rotation:] + letters[:rotation]  # shown letter i holds the option order[i]
            shown = {letters[i]: question.options[order[i]] for i in range(n)}
            episode = await run_episode(self.inner, question.model_copy(update={"options": shown}), history)
            for turn in episode.turns:
                turns.append(turn.model_copy(update={"agent": f"{turn.agent}@rotation{rotation}"}))
            for i, letter in enumerate(letters):
                mean[order[i]] += (episode.probabilities or {}).get(letter, 0.0) / n
        total = sum(mean.values())
        best = max(letters, key=lambda x: mean[x]) if total > 0 else None
        probabilities = {k: v / total for k, v in mean.items()} if total > 0 else None
        answer = final_answer(best, question.options) if best else ""
        yield Episode(
            question=question,
            answerer=self.name,
            case_en=question.text,
            answer=answer,
            answer_en=answer,
            letter=best,
            probabilities=probabilities,
            turns=turns,
            wall_time_s=time.perf_counter() - started,
        )


PRIDE_FRACTION = 0.05
"""Share of items (per option count, at least one) on which PriDe estimates the position prior by rotation."""


def _log(p: float) -> float:
    return math.log(max(p, 1e-12))


class PriorEstimator:
    """PriDe's prior over answer positions (Zheng et al., ICLR 2024), shared by a run's workers.

    On a seeded fraction of the items (per option count), the options are shown in every cyclic rotation; since each
    option then stands once at each position, the mean log-probability of a position over the rotations leaves the
    model's preference for that position: its softmax is the item's prior, averaged over the estimation items.
    """

    def __init__(
        self, inner: Answerer, questions: Sequence[Question], fraction: float = PRIDE_FRACTION, seed: int = 0
    ) -> None:
        self.inner = inner
        self.cyclic = CyclicDebias(inner)
        by_size: dict[int, list[Question]] = {}
        for question in questions:
            if question.options:
                by_size.setdefault(len(question.options), []).append(question)
        self.estimation: dict[int, list[Question]] = {}
        for size, group in sorted(by_size.items()):
            count = max(1, round(fraction * len(group)))
            self.estimation[size] = random.Random(f"{seed}:pride:{size}").sample(group, count)
        self.ids = {q.item_id for group in self.estimation.values() for q in group}
        self._priors: dict[int, dict[str, float]] = {}
        self._lock = asyncio.Lock()

    async def prior(self, size: int) -> dict[str, float]:
        """The position prior for items with ``size`` options (estimated once, on first need)."""
        async with self._lock:
            if size not in self._priors:
                per_item = [await self._item_prior(q) for q in self.estimation.get(size, [])]
                letters = [chr(65 + i) for i in range(size)]
                found = [p for p in per_item if p]
                self._priors[size] = (
                    {k: sum(p[k] for p in found) / len(found) for k in letters}
                    if found
                    else dict.fromkeys(letters, 1 / size)
                )
            return self._priors[size]

    async def _item_prior(self, question: Question) -> dict[str, float] | None:
        assert question.options is not None
        letters = list(question.options)
        sums = dict.fromkeys(letters, 0.0)
        for rotation in range(len(letters)):
            order = letters[rotation:] + letters[:rotation]
            shown = {letters[i]: question.options[order[i]] for i in range(len(letters))}
            episode = await run_episode(self.inner, question.model_copy(update={"options": shown}))
            if not episode.probabilities:
                return None
            for letter in letters:
                sums[letter] += _log(episode.probabilities.get(letter, 0.0)) / len(letters)
        top = max(sums.values())
        mass = {k: math.exp(v - top) for k, v in sums.items()}
        total = sum(mass.values())
        return {k: v / total for k, v in mass.items()}


class PriDe:
    """PriDe debiasing: the estimation items are answered by rotation (and give the prior); every other item is
    answered once and its probabilities divided by the prior over positions (about 1.15x the cost of ``single``)."""

    def __init__(self, inner: Answerer, estimator: PriorEstimator, name: str = "single+pride") -> None:
        self.inner, self.estimator, self.name = inner, estimator, name

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        if not question.options or question.item_id in self.estimator.ids:
            async for event in CyclicDebias(self.inner, self.name).stream(question, history):
                yield event
            return
        episode = await run_episode(self.inner, question, history)
        prior = await self.estimator.prior(len(question.options))
        observed = episode.probabilities or {}
        mass = {k: observed.get(k, 0.0) / max(prior.get(k, 0.0), 1e-12) for k in question.options}
        total = sum(mass.values())
        probabilities = {k: v / total for k, v in mass.items()} if total > 0 else None
        best = max(mass, key=lambda k: mass[k]) if total > 0 else None
        answer = final_answer(best, question.options) if best else ""
        note = "prior " + ", ".join(f"{k} {v:.2f}" for k, v in prior.items())
        turns = [*episode.turns, Turn(agent=self.name, content=f"Debiased by the position {note}.", kind="answer")]
        yield Episode(
            question=question,
            answerer=self.name,
            case_en=question.text,
            answer=answer,
            answer_en=answer,
            letter=best,
            probabilities=probabilities,
            turns=turns,
            wall_time_s=time.perf_counter() - started,
        )


class SingleScored:
    """The single model with its answer read another way (:data:`~medcouncil.agents.calls.Scoring`), no reasoning:
    ``cloze`` scores each option's text as the continuation of the question
    (:data:`~medcouncil.tools.mcqa.CLOZE_TEMPLATE`, no letters shown, so no position prior), one scoring call per
    option; ``joint`` multiplies that with the letter choice of the single model's own prompt (one more call): how the
    shaped council answers a multiple-choice item, without the council (its answer does not read the reasoning:
    README, "Why the shaped council answers jointly"). A question without options goes to the single model. The
    engine must return prompt log-probabilities (medcouncil's own llama.cpp engine, llama-cpp-python, vLLM); another
    fails with an error naming it."""

    def __init__(
        self, inner: Answerer, model: ChatModel, scoring: Literal["cloze", "joint"], name: str | None = None
    ) -> None:
        self.inner, self.model, self.scoring = inner, model, scoring
        self.name = name or f"single+{scoring}"

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        started = time.perf_counter()
        if not question.options:
            async for event in self.inner.stream(question, history):
                yield event
            return
        turn = Turn(agent=self.name, content="", kind="answer")
        line = await choose_after_reasoning(self.model, question.text, question.options, turn, scoring=self.scoring)
        yield TokenEvent(agent=self.name, text=line.strip())
        turn.latency_s = time.perf_counter() - started
        yield TurnEvent(turn=turn)
        yield _one_turn(self.name, question, turn.content, turn, started)
