"""Deterministic council tests with AutoGen's ReplayChatCompletionClient (through ReplayModel)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from autogen_core.models import CreateResult, LLMMessage

from medcouncil.agents import prompts
from medcouncil.agents.council import Council, CouncilConfig, SingleModel
from medcouncil.agents.protocol import Episode, Question, TokenEvent, TurnEvent, run_episode
from medcouncil.serving.dialects import Shape
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge

KNOWLEDGE = InMemoryKnowledge(
    [
        Document(
            text="Asthma: episodic wheeze and nocturnal cough relieved by salbutamol 100 mcg.", source="asthma.md"
        ),
        Document(text="Gout: urate crystals in the first MTP joint; colchicine 0.5 mg.", source="gout.md"),
    ]
)
CASE = "A 24-year-old has episodic wheeze and nocturnal cough relieved by salbutamol. Diagnosis?"


def run(council: Council | SingleModel, question: Question) -> Episode:
    return asyncio.run(run_episode(council, question))


def speakers(episode: Episode) -> list[str]:
    return [turn.agent for turn in episode.turns]


def test_english_case_skips_the_translator_and_approves() -> None:
    model = ReplayModel(["Asthma [1], then COPD. Final answer: asthma", "Sound, supported by [1].", "A"])
    episode = run(Council(model, KNOWLEDGE), Question(text=CASE))
    assert speakers(episode) == ["retriever", "diagnostician", "critic"]
    assert episode.language == "en"
    assert episode.answer == "Asthma [1], then COPD. Final answer: asthma"
    assert [e.source for e in episode.sources] == ["asthma.md"]
    critic = episode.turns[-1]
    assert critic.verdict == "APPROVE" and critic.model_calls == 2
    assert episode.turns[0].model_calls == 0  # the retriever calls the search tool, not a model


def test_critic_loop_is_bounded() -> None:
    replies = ["Pneumonia.", "Contradicts [1].", "R", "Asthma [1].", "Still weak.", "R", "unused"]
    episode = run(Council(ReplayModel(replies), KNOWLEDGE), Question(text=CASE))
    assert speakers(episode) == ["retriever", "diagnostician", "critic", "diagnostician", "critic"]
    assert episode.answer == "Asthma [1]."  # the revised answer stands after the last allowed round
    revised_prompt = episode.turns[3]
    assert revised_prompt.kind == "diagnosis"

    none = run(Council(ReplayModel(replies), KNOWLEDGE, CouncilConfig(max_revisions=0)), Question(text=CASE))
    assert speakers(none) == ["retriever", "diagnostician", "critic"]


def test_revision_sees_the_critique() -> None:
    model = ReplayModel(["Pneumonia.", "Ignores the wheeze in [1].", "R", "Asthma [1].", "Fine.", "A"])
    run(Council(model, KNOWLEDGE), Question(text=CASE))
    second_diagnosis = model.seen[3][-1].content
    assert "The critic asked for a revision" in second_diagnosis and "Ignores the wheeze" in second_diagnosis


def test_unsupported_dose_forces_a_revision_without_asking_the_model() -> None:
    model = ReplayModel(["Give salbutamol 5000 mcg.", "Looks fine.", "Asthma, salbutamol 100 mcg [1].", "Ok.", "A"])
    episode = run(Council(model, KNOWLEDGE), Question(text=CASE))
    first_critique = episode.turns[2]
    assert first_critique.verdict == "REVISE" and first_critique.model_calls == 1  # no verdict call needed
    assert "5000 mcg" in first_critique.content
    assert episode.turns[-1].verdict == "APPROVE"


def test_korean_case_is_translated_both_ways_with_terms_preserved() -> None:
    korean = "24세 환자가 야간 기침과 천명, salbutamol 100 mcg 흡입 후 호전, FEV1 62%. 진단은?"
    replies = [
        "A ⟦1⟧-year-old has night cough and wheeze, improved after ⟦2⟧ inhalation, ⟦4⟧ ⟦5⟧. Diagnosis?",  # drops ⟦3⟧
        "Asthma [1]: salbutamol helps, FEV1 62%.",
        "Sound.",
        "A",
        "천식 [⟦1⟧]: ⟦2⟧ 도움, ⟦3⟧ ⟦4⟧.",
    ]
    episode = run(Council(ReplayModel(replies), KNOWLEDGE), Question(text=korean))
    assert speakers(episode) == ["translator", "retriever", "diagnostician", "critic", "translator"]
    assert episode.language == "ko"
    for term in ("24", "salbutamol", "100 mcg", "FEV1", "62%"):
        assert term in episode.case_en  # checked in code: a dropped placeholder is appended, never lost
    assert episode.answer_en == "Asthma [1]: salbutamol helps, FEV1 62%."
    assert episode.answer == "천식 [1]: salbutamol 도움, FEV1 62%."


def test_multiple_choice_ends_in_a_constrained_choice() -> None:
    question = Question(text=CASE, options={"A": "Asthma", "B": "Gout", "C": "Pneumonia"})
    episode = run(Council(ReplayModel(["Asthma [1].", "A", "Sound.", "A"]), KNOWLEDGE), question)
    assert episode.letter == "A" and episode.probabilities == {"A": 1.0, "B": 0.0, "C": 0.0}
    assert episode.answer.endswith("Final answer: A. Asthma")
    assert episode.turns[1].model_calls == 2


def test_usage_and_calls_are_accounted_per_turn() -> None:
    events: list[object] = []

    async def collect() -> None:
        council = Council(ReplayModel(["Asthma [1].", "Sound.", "A"]), KNOWLEDGE)
        async for event in council.stream(Question(text=CASE)):
            events.append(event)

    asyncio.run(collect())
    episode = events[-1]
    assert isinstance(episode, Episode)
    turns = [e.turn for e in events if isinstance(e, TurnEvent)]
    assert [t.agent for t in turns] == speakers(episode)
    assert episode.model_calls == 3
    assert episode.prompt_tokens == sum(t.prompt_tokens for t in turns) > 0
    assert episode.completion_tokens == sum(t.completion_tokens for t in turns) > 0
    assert all(t.latency_s >= t.model_time_s >= 0 for t in turns)
    assert episode.wall_time_s >= sum(t.latency_s for t in turns)
    assert "".join(e.text for e in events if isinstance(e, TokenEvent) and e.agent == "diagnostician") == "Asthma [1]."


def test_no_evidence_is_said_not_invented() -> None:
    episode = run(Council(ReplayModel(["Unknown.", "Fine.", "A"]), InMemoryKnowledge([])), Question(text=CASE))
    assert episode.turns[0].content == prompts.NO_EVIDENCE and episode.sources == []


def test_single_model_baseline() -> None:
    question = Question(text=CASE, options={"A": "Asthma", "B": "Gout"})
    episode = run(SingleModel(ReplayModel(["B"])), question)
    assert episode.letter == "B" and episode.model_calls == 1 and speakers(episode) == ["single"]
    free = run(SingleModel(ReplayModel(["Probably asthma."])), Question(text=CASE))
    assert free.answer == "Probably asthma."


def test_config_rejects_unknown_roles() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown roles"):
        CouncilConfig(roles=["diagnostician", "oracle"])
    with pytest.raises(ValueError, match="needs a diagnostician"):
        CouncilConfig(roles=["critic"])


def test_a_failed_model_call_ends_the_episode_with_an_error() -> None:
    from medcouncil.serving.common.errors import EndpointUnreachableError

    class Down(ReplayModel):
        async def stream(self, messages, **create_args):  # type: ignore[no-untyped-def,override]
            raise EndpointUnreachableError("endpoint unreachable: http://127.0.0.1:9/v1 (APIConnectionError)")
            yield ""

    episode = run(Council(Down([]), KNOWLEDGE), Question(text=CASE))
    assert episode.error == "diagnostician: endpoint unreachable: http://127.0.0.1:9/v1 (APIConnectionError)"
    assert speakers(episode) == ["retriever", "diagnostician"]  # the critic never ran


class Stalls(ReplayModel):
    """A model whose streamed reply never ends (a slow engine): the turn is cancelled while it is in flight."""

    async def stream(
        self, messages: Sequence[LLMMessage], shape: Shape | None = None, **create_args: Any
    ) -> AsyncIterator[str | CreateResult]:
        self.seen.append(list(messages))
        yield "Thinking"
        await asyncio.Event().wait()


def test_a_cancelled_council_turn_logs_no_autogen_error(caplog: pytest.LogCaptureFixture) -> None:
    async def cancel_mid_call() -> None:
        model = Stalls([])
        turn = asyncio.create_task(run_episode(Council(model, KNOWLEDGE), Question(text="Wheeze at night?")))
        while not model.seen:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn

    with caplog.at_level(logging.DEBUG):
        asyncio.run(cancel_mid_call())
        logging.getLogger("autogen_core").error("a real failure", exc_info=ValueError("boom"))
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == ["a real failure"]  # other errors are still logged
