"""The role-format measure: echo of the prompt, the role's trained format, empty turns."""

from __future__ import annotations

from typing import Literal

from medcouncil.agents.protocol import Episode, Question, Turn
from medcouncil.scenarios.bench.journal import Record
from medcouncil.scenarios.role_format.measure import echoes, loops, measure_roles, own_text
from medcouncil.serving.components import Choice

OPTIONS = {"A": "Acute inferior myocardial infarction", "B": "Pneumonia"}
CASE = "A 58-year-old man has crushing central chest pain radiating to the left arm with sweating for 30 minutes."


def record(diagnosis: str, review: str, verdict: Literal["APPROVE", "REVISE"] = "APPROVE") -> Record:
    turns = [
        Turn(
            agent="diagnostician",
            content=f"{diagnosis}\n\nFinal answer: A. {OPTIONS['A']}".strip(),
            choice=Choice(letter="A"),
        ),
        Turn(agent="critic", kind="verdict", verdict=verdict, content=f"{verdict}: {review}" if review else verdict),
    ]
    episode = Episode(question=Question(text=CASE, options=OPTIONS), answerer="council", turns=turns)
    return Record(sample_id="1", mode="council", gold="A", letter="A", correct=True, episode=episode)


def test_own_text_drops_what_medcouncil_appends() -> None:
    r = record("ST elevation inferiorly.\nFinal answer: A", "Sound: A fits.")
    assert own_text(r.episode, "diagnostician") == ["ST elevation inferiorly.\nFinal answer: A"]
    assert own_text(r.episode, "critic") == ["Sound: A fits."]
    assert own_text(record("", "").episode, "diagnostician") == [""]


def test_echo_format_and_empty_are_told_apart() -> None:
    assert echoes(f"Case:\n{CASE}", CASE) and echoes(CASE + " What is it?", CASE)
    assert not echoes("Inferior STEMI: ST elevation in II, III, aVF; reperfusion now.", CASE)
    assert loops("B is not the best option: B is. Ans. " * 3) and not loops("Inferior STEMI. Reperfuse now.")
    rows = measure_roles(
        r.episode
        for r in [
            record(
                "Inferior STEMI from the ECG.\nFinal answer: A. Acute inferior myocardial infarction", "Sound: fits."
            ),
            record(CASE, "B. Pneumonia is not the best option: A is.", "REVISE"),
            record("", CASE, "REVISE"),
            record("Chest pain.", ""),
        ]
    )
    diagnostician, critic = rows
    assert diagnostician.turns == 4 and diagnostician.echo == 0.25 and diagnostician.format == 0.25
    assert diagnostician.empty == 0.25
    assert critic.turns == 4 and critic.format == 0.5 and critic.echo == 0.25 and critic.empty == 0.25
    assert diagnostician.loops == 0 and critic.loops == 0
