"""The council reasons over the options: prompts carry them (translated for Korean), revisions see their previous
answer, the last verdict is kept, values from the options or the conversation are not flagged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from medcouncil.agents.council import Council
from medcouncil.agents.protocol import Episode, Question, run_episode
from medcouncil.agents.roles import split_options
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge

KNOWLEDGE = InMemoryKnowledge([Document(text="Gout: urate crystals in the first MTP joint.", source="gout.md")])
OPTIONS = {"A": "Septic arthritis", "B": "Gout", "C": "Pseudogout", "D": "Cellulitis"}
CASE = "A 50-year-old man has a hot, swollen first MTP joint after a night of drinking. Diagnosis?"


def run(council: Council, question: Question, history: tuple[Episode, ...] = ()) -> Episode:
    return asyncio.run(run_episode(council, question, history))


def text_of(messages: Sequence[object]) -> str:
    return "\n".join(str(getattr(m, "content", "")) for m in messages)


def test_diagnostician_and_critic_see_the_lettered_options() -> None:
    model = ReplayModel(["Gout [1]. Final answer: B", "B", "Sound; B beats A and C.", "A"])
    episode = run(Council(model, KNOWLEDGE), Question(text=CASE, options=OPTIONS))
    diagnosis, choice, critique, _ = (text_of(seen) for seen in model.seen)
    for prompt in (diagnosis, critique):
        assert "Options:\nA. ⟪Septic arthritis⟫\nB. ⟪Gout⟫\nC. ⟪Pseudogout⟫\nD. ⟪Cellulitis⟫" in prompt
    assert "weigh the chosen option against each of the others" in " ".join(critique.split())
    # The final choice uses the one choice template, the reasoning in its slot.
    assert choice.startswith("Answer the following multiple-choice") and "Reasoning:\nGout [1]." in choice
    assert choice.endswith("Answer:")
    assert episode.letter == "B" and episode.verdict == "APPROVE"


def test_a_revision_sees_its_previous_answer_and_the_last_verdict_is_kept() -> None:
    replies = ["Cellulitis.", "D", "Ignores the MTP joint.", "R", "Gout.", "B", "Still unsure.", "R", "unused"]
    model = ReplayModel(replies)
    episode = run(Council(model, KNOWLEDGE), Question(text=CASE, options=OPTIONS))
    revision = text_of(model.seen[4])
    assert "Your previous answer:\nCellulitis.\n\nFinal answer: D. Cellulitis" in revision
    assert "The critic asked for a revision:\nIgnores the MTP joint." in revision
    assert episode.letter == "B"
    # The last critic turn ran after the last allowed revision: its verdict is on the episode, not dropped.
    assert episode.turns[-1].verdict == "REVISE" and episode.verdict == "REVISE"


def test_values_from_the_options_or_earlier_turns_are_not_flagged() -> None:
    options = {"A": "Colchicine 0.5 mg", "B": "Allopurinol 300 mg"}
    model = ReplayModel(["Colchicine 0.5 mg.", "A", "Fine.", "A"])
    episode = run(Council(model, KNOWLEDGE), Question(text="Acute gout: first treatment?", options=options))
    assert episode.verdict == "APPROVE"  # 0.5 mg is in option A: no forced revision
    said = "Start prednisolone 30 mg."
    earlier = episode.model_copy(update={"answer_en": said, "answer": said})
    model = ReplayModel(["Keep prednisolone 30 mg as before.", "Fine.", "A"])
    follow_up = run(Council(model, KNOWLEDGE), Question(text="And now?"), (earlier,))
    assert follow_up.verdict == "APPROVE"
    model = ReplayModel(["Give prednisolone 45 mg.", "Fine.", "A", "Prednisolone 30 mg.", "Fine.", "A"])
    flagged = run(Council(model, KNOWLEDGE), Question(text="And now?"), (earlier,))
    assert "45 mg" in flagged.turns[2].content and flagged.turns[2].verdict == "REVISE"


def test_korean_options_are_translated_with_the_case_and_keep_their_values() -> None:
    korean = "50세 남성이 음주 후 첫째 발가락 관절이 붓고 뜨겁다. 요산 9.1 mg/dL. 진단은?"
    options = {"A": "패혈성 관절염", "B": "통풍", "C": "가성통풍", "D": "봉와직염"}
    translated = (
        "A ⟦1⟧-year-old man has a hot swollen big toe joint after drinking. Urate ⟦2⟧. Diagnosis?\n\n"
        "⟦3⟧. Septic arthritis\n⟦4⟧. Gout\n⟦5⟧. Pseudogout\n⟦6⟧. Cellulitis"
    )
    model = ReplayModel([translated, "Gout. Final answer: B", "B", "Sound.", "A", "통풍 (B)"])
    episode = run(Council(model, KNOWLEDGE), Question(text=korean, options=options))
    sent = text_of(model.seen[0])
    assert "⟦3⟧. 패혈성 관절염" in sent and "9.1 mg/dL" not in sent  # options travel with the case, masked alike
    assert episode.case_en.startswith("A 50-year-old") and episode.case_en.endswith("Urate 9.1 mg/dL. Diagnosis?")
    diagnosis = text_of(model.seen[1])
    assert "Options:\nA. ⟪Septic arthritis⟫\nB. ⟪Gout⟫" in diagnosis and "통풍" not in diagnosis
    assert "B. ⟪Gout⟫" in text_of(model.seen[2]) and episode.letter == "B"


def test_split_options_needs_every_letter_in_order() -> None:
    text = "Case text.\nMore.\n\nA. one\nB) two\n(C) three"
    assert split_options(text, ["A", "B", "C"]) == ("Case text.\nMore.", {"A": "one", "B": "two", "C": "three"})
    assert split_options("Case.\nA. one\nC. three", ["A", "B", "C"]) is None
    assert split_options("A. one\nB. two", ["A", "B"]) is None  # no case left
    assert split_options("Case only, the model dropped the options.", ["A", "B"]) is None
