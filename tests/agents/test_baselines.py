"""Chain-of-thought and self-consistency baselines, on scripted models."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autogen_core.models import RequestUsage

from medcouncil.agents.baselines import ChainOfThought, SelfConsistency, vote
from medcouncil.agents.protocol import Episode, Question, run_episode
from medcouncil.serving.client import Choice
from medcouncil.serving.replay import ReplayModel

QUESTION = Question(text="Hot swollen first MTP joint after drinking. Diagnosis?",
                    options={"A": "Septic arthritis", "B": "Gout", "C": "Cellulitis"})  # fmt: skip


class Sampling(ReplayModel):
    """Records the sampling arguments of each reasoning."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.args: list[dict[str, Any]] = []

    def stream(self, messages: Any, **create_args: Any) -> Any:
        self.args.append(create_args)
        return super().stream(messages, **create_args)


def run(answerer: ChainOfThought | SelfConsistency) -> Episode:
    return asyncio.run(run_episode(answerer, QUESTION))


def test_cot_reasons_with_the_budget_then_chooses_with_the_one_template() -> None:
    model = Sampling(["The MTP joint and alcohol point to gout. Final answer: B", "B"])
    episode = run(ChainOfThought(model, max_tokens=200))
    reasoning, choice = ("\n".join(str(m.content) for m in seen) for seen in model.seen)
    assert "Options:\nA. Septic arthritis\nB. Gout\nC. Cellulitis" in reasoning and "step by step" in reasoning
    assert model.args == [{"max_tokens": 200}]
    assert choice.startswith("Answer the following multiple-choice") and "Reasoning:\nThe MTP joint" in choice
    assert episode.letter == "B" and episode.model_calls == 2 and episode.answerer == "cot"


def test_self_consistency_samples_k_seeded_reasonings_and_votes() -> None:
    model = Sampling(["Gout.", "B", "Septic?", "A", "Gout again.", "B"])
    episode = run(SelfConsistency(model, k=3, max_tokens=100, temperature=0.7))
    assert [a["seed"] for a in model.args] == [0, 1, 2] and all(a["temperature"] == 0.7 for a in model.args)
    assert episode.letter == "B" and episode.model_calls == 6 and len(episode.turns) == 3
    assert episode.answer.startswith("Votes: A x1, B x2") and episode.probabilities is not None
    assert abs(sum(episode.probabilities.values()) - 1) < 1e-9 and episode.probabilities["B"] > 0.5


def choice(letter: str | None, probabilities: dict[str, float] | None) -> Choice:
    return Choice(letter=letter, probabilities=probabilities, raw=letter or "", usage=RequestUsage(prompt_tokens=0,
                  completion_tokens=0))  # fmt: skip


def test_a_tie_goes_to_the_higher_summed_probability() -> None:
    tied = [choice("A", {"A": 0.5, "B": 0.4, "C": 0.1}), choice("C", {"A": 0.2, "B": 0.2, "C": 0.6})]
    letter, probabilities = vote(tied)
    assert letter == "A" and probabilities == pytest.approx({"A": 0.35, "B": 0.3, "C": 0.35})  # a tie: A first
    tied[1] = choice("C", {"A": 0.1, "B": 0.2, "C": 0.7})
    assert vote(tied)[0] == "C"
    assert vote([choice(None, None)]) == (None, None)


def test_cyclic_debiasing_averages_over_rotations_mapped_back() -> None:
    from medcouncil.agents.baselines import CyclicDebias
    from medcouncil.agents.council import SingleModel

    # A model stuck on position A: every rotation shows another option at A, so the average is flat...
    stuck = ReplayModel(["A", "A", "A"])
    flat = asyncio.run(run_episode(CyclicDebias(SingleModel(stuck)), QUESTION))
    assert flat.probabilities == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
    shown = [str(seen[-1].content) for seen in stuck.seen]
    assert "A. Septic arthritis" in shown[0] and "A. Gout" in shown[1] and "A. Cellulitis" in shown[2]
    # ... while a model that follows the content (gout wherever it is shown) keeps it.
    follows = ReplayModel(["B", "A", "C"])  # rotation 0: Gout at B; 1: at A; 2: at C
    episode = asyncio.run(run_episode(CyclicDebias(SingleModel(follows)), QUESTION))
    assert episode.letter == "B" and episode.probabilities == pytest.approx({"A": 0, "B": 1, "C": 0})
    assert episode.model_calls == 3 and episode.answerer == "single+cyclic"
