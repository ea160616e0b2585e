"""The deliberating panel with scripted models: independent answers, rounds that show the others' answers,
consensus or the moderator, specialties chosen by the model, Korean options translated."""

from __future__ import annotations

import asyncio

import pytest

from medcouncil.agents.build import make_council
from medcouncil.agents.council import CouncilConfig, PanelConfig
from medcouncil.agents.panel import Panel
from medcouncil.agents.protocol import Episode, Question, run_episode
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge

KNOWLEDGE = InMemoryKnowledge([Document(text="Gout: urate crystals in the first MTP joint.", source="gout.md")])
OPTIONS = {"A": "Septic arthritis", "B": "Gout", "C": "Cellulitis"}
QUESTION = Question(
    text="A 50-year-old man has a hot, swollen first MTP joint after drinking. Diagnosis?", options=OPTIONS
)


def panel(model: ReplayModel, rounds: int = 2, specialties: list[str] | None = None) -> Panel:
    chosen = specialties or ["internal medicine", "emergency medicine"]
    config = CouncilConfig(structure="panel", panel=PanelConfig(rounds=rounds, specialties=chosen))
    council = make_council(dict.fromkeys(("translator", "diagnostician", "critic"), model), KNOWLEDGE, config)
    assert isinstance(council, Panel)
    return council


def run(council: Panel, question: Question = QUESTION) -> Episode:
    return asyncio.run(run_episode(council, question))


def test_independent_answers_that_agree_end_at_once() -> None:
    model = ReplayModel(["Gout [1].", "B", "Gout.", "B"])
    episode = run(panel(model))
    assert [t.agent for t in episode.turns] == ["retriever", "panelist_1", "panelist_2"]
    first, second = ("\n".join(str(m.content) for m in model.seen[i]) for i in (0, 2))
    assert "specialist in internal medicine" in first and "specialist in emergency medicine" in second
    assert "Options:\nA. ⟪Septic arthritis⟫\nB. ⟪Gout⟫" in first
    assert "other panelists" not in second  # round one is independent
    assert episode.letter == "B" and episode.answerer == "panel" and episode.model_calls == 4


def test_disagreement_goes_to_rounds_showing_the_others_then_consensus() -> None:
    model = ReplayModel(["Septic.", "A", "Gout.", "B", "Fair, gout.", "B", "Still gout.", "B"])
    episode = run(panel(model))
    assert [t.agent for t in episode.turns][1:] == ["panelist_1", "panelist_2", "panelist_1", "panelist_2"]
    discussion = "\n".join(str(m.content) for m in model.seen[4])
    assert "Your previous answer:\n[internal medicine] Septic." in discussion
    assert "- emergency medicine: [emergency medicine] Gout." in discussion
    assert episode.letter == "B" and "panel agrees" in episode.answer_en


def test_no_consensus_after_the_rounds_is_decided_by_the_moderator() -> None:
    model = ReplayModel(["Septic.", "A", "Gout.", "B", "Septic.", "A", "Gout.", "B", "C"])
    episode = run(panel(model, rounds=1))
    assert [t.agent for t in episode.turns][-1] == "moderator"
    moderator = "\n".join(str(m.content) for m in model.seen[-1])
    assert "The panel did not agree" in moderator and moderator.endswith("Answer:")
    assert episode.letter == "C" and episode.model_calls == 9


def test_the_model_picks_the_specialties_from_the_fixed_list() -> None:
    model = ReplayModel(["D", "A", "Gout.", "B", "Gout.", "B"])  # D = infectious diseases, then A = internal medicine
    config = CouncilConfig(structure="panel", panel=PanelConfig(specialties=["auto"], size=2))
    episode = run(Panel(model, KNOWLEDGE, config))
    assert episode.turns[1].content.startswith("[infectious diseases]")
    assert episode.turns[2].content.startswith("[internal medicine]")
    with pytest.raises(ValueError, match="at least two"):
        PanelConfig(specialties=["cardiology"])


def test_a_korean_item_reaches_the_panel_with_translated_options() -> None:
    korean = Question(
        text="50세 남성, 음주 후 첫째 발가락 관절이 붓고 뜨겁다. 진단은?",
        options={"A": "패혈성 관절염", "B": "통풍", "C": "봉와직염"},
    )
    translated = (
        "A ⟦1⟧-year-old man has a hot swollen big toe joint after drinking. Diagnosis?\n\n"
        "⟦2⟧. Septic arthritis\n⟦3⟧. Gout\n⟦4⟧. Cellulitis"
    )
    model = ReplayModel([translated, "Gout.", "B", "Gout.", "B", "통풍입니다 (B)"])
    episode = run(panel(model), korean)
    seen = "\n".join(str(m.content) for m in model.seen[1])
    assert "Options:\nA. ⟪Septic arthritis⟫\nB. ⟪Gout⟫\nC. ⟪Cellulitis⟫" in seen
    assert episode.letter == "B" and episode.turns[-1].agent == "translator" and episode.answer == "통풍입니다 (B)"
