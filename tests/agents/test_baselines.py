"""Chain-of-thought and self-consistency baselines, on scripted models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import pytest
from autogen_core.models import CreateResult, LLMMessage, RequestUsage

from medcouncil.agents.baselines import ChainOfThought, SelfConsistency, vote
from medcouncil.agents.protocol import Episode, Question, run_episode
from medcouncil.serving.components import Choice
from medcouncil.serving.dialects import Shape
from medcouncil.serving.replay import ReplayModel

QUESTION = Question(
    text="Hot swollen first MTP joint after drinking. Diagnosis?",
    options={"A": "Septic arthritis", "B": "Gout", "C": "Cellulitis"},
)


class Sampling(ReplayModel):
    """Records the sampling arguments of each reasoning."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.args: list[dict[str, Any]] = []

    def stream(
        self, messages: Sequence[LLMMessage], shape: Shape | None = None, **create_args: Any
    ) -> AsyncIterator[str | CreateResult]:
        self.args.append(create_args)
        return super().stream(messages, shape, **create_args)


def run(answerer: ChainOfThought | SelfConsistency) -> Episode:
    return asyncio.run(run_episode(answerer, QUESTION))


def test_cot_reasons_with_the_budget_then_chooses_with_the_one_template() -> None:
    model = Sampling(["The MTP joint and alcohol point to gout. Final answer: B", "B"])
    episode = run(ChainOfThought(model, max_tokens=200))
    reasoning, choice = ("\n".join(str(m.content) for m in seen) for seen in model.seen)
    assert "Options:\nA. ⟪Septic arthritis⟫\nB. ⟪Gout⟫\nC. ⟪Cellulitis⟫" in reasoning and "step by step" in reasoning
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
    return Choice(
        letter=letter,
        probabilities=probabilities,
        raw=letter or "",
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
    )


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
    assert "A. ⟪Septic arthritis⟫" in shown[0] and "A. ⟪Gout⟫" in shown[1] and "A. ⟪Cellulitis⟫" in shown[2]
    # ... while a model that follows the content (gout wherever it is shown) keeps it.
    follows = ReplayModel(["B", "A", "C"])  # rotation 0: Gout at B; 1: at A; 2: at C
    episode = asyncio.run(run_episode(CyclicDebias(SingleModel(follows)), QUESTION))
    assert episode.letter == "B" and episode.probabilities == pytest.approx({"A": 0, "B": 1, "C": 0})
    assert episode.model_calls == 3 and episode.answerer == "single+cyclic"


class PositionBiased:
    """A scripted single model: prefers position A by a factor, otherwise follows the content (gout)."""

    name = "single"

    def __init__(self, bias: float = 4.0) -> None:
        self.bias, self.calls = bias, 0

    async def stream(self, question: Question, history: object = ()) -> Any:
        from medcouncil.agents.protocol import Turn

        assert question.options is not None
        self.calls += 1
        weights = {
            k: (3.0 if v == "Gout" else 1.0) * (self.bias if k == "A" else 1.0) for k, v in question.options.items()
        }
        total = sum(weights.values())
        probabilities = {k: w / total for k, w in weights.items()}
        letter = max(probabilities, key=lambda k: probabilities[k])
        yield Episode(
            question=question,
            answerer="single",
            letter=letter,
            probabilities=probabilities,
            turns=[Turn(agent="single", content=letter, model_calls=1)],
        )


def test_pride_estimates_the_position_prior_and_divides_it_out() -> None:
    from medcouncil.agents.baselines import PriDe, PriorEstimator

    questions = [
        QUESTION.model_copy(
            update={"item_id": f"q{i}", "options": {"A": "Septic arthritis", "B": "Gout", "C": "Cellulitis"}}
        )
        for i in range(20)
    ]
    model = PositionBiased()
    estimator = PriorEstimator(model, questions, fraction=0.05, seed=1)
    assert len(estimator.ids) == 1  # 5% of 20
    debiased = PriDe(model, estimator)
    plain = asyncio.run(run_episode(model, questions[0]))
    assert plain.letter == "A"  # the position bias (4x) beats the content (3x)
    other = next(q for q in questions if q.item_id not in estimator.ids)
    episode = asyncio.run(run_episode(debiased, other))
    assert episode.letter == "B" and episode.answerer == "single+pride"
    prior = asyncio.run(estimator.prior(3))
    assert prior == pytest.approx({"A": 4 / 6, "B": 1 / 6, "C": 1 / 6})
    calls = model.calls
    asyncio.run(run_episode(debiased, next(q for q in questions[5:] if q.item_id not in estimator.ids)))
    assert model.calls == calls + 1  # the prior is estimated once; later items cost one call


def test_single_cloze_scores_the_option_texts_after_the_question_without_letters() -> None:
    from medcouncil.agents.baselines import SingleScored
    from medcouncil.agents.council import SingleModel

    model = ReplayModel(["B", "Gout, most likely."])
    cloze = SingleScored(SingleModel(model), model, "cloze")
    episode = asyncio.run(run_episode(cloze, QUESTION))
    assert episode.letter == "B" and episode.answerer == "single+cloze" and episode.answer == "Final answer: B. Gout"
    ((prompt, scored),) = model.cloze_seen
    assert prompt == "Question: Hot swollen first MTP joint after drinking. Diagnosis?\nAnswer:"
    assert scored == QUESTION.options  # each option's own text, no letter in the prompt
    assert set(episode.probabilities or {}) == {"A", "B", "C"} and episode.model_calls == 1
    scorings: tuple[Literal["cloze", "joint"], ...] = ("cloze", "joint")
    for scoring in scorings:  # a question without options goes to the single model
        free = ReplayModel(["Gout, most likely."])
        open_question = Question(text="What causes a hot swollen first MTP joint?")
        answered = asyncio.run(run_episode(SingleScored(SingleModel(free), free, scoring), open_question))
        assert answered.answer == "Gout, most likely." and free.cloze_seen == [] and answered.letter is None


def test_single_joint_multiplies_the_letter_choice_of_the_single_prompt_with_the_cloze() -> None:
    from medcouncil.agents.baselines import SingleScored
    from medcouncil.agents.council import SingleModel

    # letter A 0.6 (B, C 0.2) x cloze B 0.5 (A, C 0.25): A 0.15 > B 0.10 > C 0.05, the letter's lead holds
    model = ReplayModel(["A=0.6", "B=0.5"])
    episode = asyncio.run(run_episode(SingleScored(SingleModel(model), model, "joint"), QUESTION))
    assert episode.answerer == "single+joint" and episode.letter == "A" and episode.model_calls == 2
    assert episode.probabilities == pytest.approx({"A": 0.5, "B": 1 / 3, "C": 1 / 6})
    single = ReplayModel(["A=0.6"])
    asyncio.run(run_episode(SingleModel(single), QUESTION))
    assert model.seen[0] == single.seen[0]  # the letter is chosen on the single model's own prompt
    ((prompt, scored),) = model.cloze_seen
    assert prompt.endswith("Diagnosis?\nAnswer:") and scored == QUESTION.options
    # letter A 0.4 (B, C 0.3) x cloze B 0.5: B 0.15 > A 0.10, the cloze's lead wins
    model = ReplayModel(["A=0.4", "B=0.5"])
    assert asyncio.run(run_episode(SingleScored(SingleModel(model), model, "joint"), QUESTION)).letter == "B"


def test_the_joint_choice_falls_back_to_the_cloze_and_counts_both_calls() -> None:
    from autogen_core.models import RequestUsage

    from medcouncil.agents.calls import joint_choice, multiply
    from medcouncil.serving.components import Choice

    usage = RequestUsage(prompt_tokens=10, completion_tokens=1)
    cloze = Choice(letter="C", probabilities={"A": 0.2, "B": 0.3, "C": 0.5}, usage=usage, calls=3)
    blind = Choice(letter="A", probabilities=None, usage=usage, calls=1)  # an engine without log-probabilities
    joint = joint_choice(blind, cloze)
    assert joint.letter == "C" and joint.probabilities == cloze.probabilities and joint.calls == 4
    assert joint.usage.prompt_tokens == 20 and not joint.cached
    parts = json.loads(joint.raw)  # both sides kept, so a run can be split into its parts again
    assert parts["letter"] == "A" and parts["cloze"] == "C" and parts["cloze_probabilities"] == cloze.probabilities
    disjoint = Choice(letter="A", probabilities={"A": 1.0, "B": 0.0, "C": 0.0}, usage=usage)
    sure = Choice(letter="B", probabilities={"A": 0.0, "B": 1.0, "C": 0.0}, usage=usage)
    assert joint_choice(disjoint, sure).letter == "B"  # no option with mass in both: the cloze decides
    silent = Choice(letter=None, probabilities=None, usage=usage)
    assert joint_choice(disjoint, silent).letter == "A"  # a cloze that chose none: the letter decides
    both = joint_choice(disjoint.model_copy(update={"cached": True}), cloze.model_copy(update={"cached": True}))
    assert both.cached and both.probabilities == {"A": 1.0, "B": 0.0, "C": 0.0}  # every option, zero or not
    assert multiply({"A": 0.5, "B": 0.5, "C": 0.0}, {"A": 0.2, "B": 0.8}) == pytest.approx(
        {"A": 0.2, "B": 0.8, "C": 0.0}
    )  # an option one side gave no mass, or lacks, keeps its place with 0
    tiny = multiply({"A": 1e-200, "B": 1e-210}, {"A": 1e-200, "B": 1e-150})
    assert tiny == pytest.approx({"A": 1e-40, "B": 1.0}, rel=1e-6, abs=0)  # 1e-400 against 1e-360: no underflow
