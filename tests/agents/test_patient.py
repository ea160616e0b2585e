"""The model patient and the Korean encounter (translator both ways) with scripted models."""

from __future__ import annotations

import asyncio
from pathlib import Path

from autogen_core.models import SystemMessage

from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.interview import interview
from medcouncil.agents.judge import judge
from medcouncil.agents.lookup import Reveal, measurement_result
from medcouncil.agents.patient import ModelPatient, Translator
from medcouncil.serving.replay import ReplayModel
from tests.agents.test_interview import CASE, ScriptedDoctor, patient

FIXTURE = Path(__file__).parent.parent / "scenarios" / "fixtures" / "episodes_ko.jsonl"
KOREAN = ClinicalCase.model_validate_json(FIXTURE.read_text(encoding="utf-8").splitlines()[0])


async def measure(case: ClinicalCase, text: str) -> Reveal:
    return measurement_result(case, text)


def test_the_model_patient_sees_its_own_account_only_and_its_reveals_are_accounted() -> None:
    model = ReplayModel(["I smoke a pack a day, doctor."])
    model_patient = ModelPatient(model)
    reveal = asyncio.run(model_patient(CASE, "Do you smoke?"))
    assert reveal.reply == "I smoke a pack a day, doctor."
    assert [f.name for f in reveal.revealed] == ["Social history"]  # what the question names, as the lookup
    system = model.seen[0][0]
    assert isinstance(system, SystemMessage)
    assert "⟪Smokes a pack a day.⟫" in system.content and "Reply in English" in system.content
    # The examination and the tests never reach the patient's prompt.
    assert "125/80" not in system.content and "Elevated" not in system.content
    assert model_patient.turns[0].model_calls == 1


def test_a_korean_episode_goes_through_the_translator_both_ways() -> None:
    translations = [
        "24-year-old woman, wheezing and night cough",  # opening -> en
        "Examine the patient and make a diagnosis.",  # objective -> en
        "쌕쌕거림이 있고 언제부터 있었나요?",  # the question -> ko, for the patient
        "Wheezing after exercise for 3 months, better after salbutamol.",  # patient reply -> en
        "FEV1/FVC 0.65, FEV1 up 15% after salbutamol 400 mcg",  # test result -> en
        "천식",  # diagnosis -> ko
    ]
    translator = Translator(ReplayModel(translations))
    doctor = ScriptedDoctor(["ASK: Tell me about your history of wheezing", "TEST: spirometry", "DIAGNOSIS: asthma"])
    record = asyncio.run(interview(doctor, KOREAN, patient, measure, budget=5, translate=translator))
    first = doctor.questions[0].text
    assert "24-year-old woman, wheezing and night cough" in first and "24세" not in first
    replies = [s for s in record.steps if s.by != "doctor"]
    assert replies[0].text.startswith("Wheezing after exercise") and "쌕쌕거림" in replies[0].original
    assert replies[1].cost == 120.0 and "살부타몰" in replies[1].original
    # The doctor never read Korean; its diagnosis went back into Korean for the judge; translation is costed.
    assert all("쌕쌕" not in q.text for q in doctor.questions)
    assert record.diagnosis == "asthma" and record.diagnosis_translated == "천식"
    assert len(record.support) == 6 and record.model_calls == 6
    verdict = asyncio.run(judge(KOREAN, record.diagnosis_translated))
    assert verdict.correct and verdict.method == "exact"


def test_protected_values_cross_the_translation_unchanged() -> None:
    # The model drops nothing here, but it is sent placeholders, never the values themselves.
    model = ReplayModel(["Temperature ⟦1⟧, pulse ⟦2⟧"])
    text = asyncio.run(Translator(model)("체온 36.8°C, 맥박 88회/분", "en"))
    sent = str(model.seen[0][1].content)
    assert "36.8" not in sent and "⟦1⟧" in sent
    assert text.startswith("Temperature 36.8")


def test_a_korean_model_patient_hears_korean_and_answers_in_korean() -> None:
    model = ReplayModel(["네, 3개월 전부터 있어요."])
    reveal = asyncio.run(ModelPatient(model)(KOREAN, "Do you wheeze after exercise?\n운동 후 쌕쌕거림이 있나요?"))
    assert reveal.reply == "네, 3개월 전부터 있어요."
    assert "Reply in Korean" in str(model.seen[0][0].content)
    assert "운동 후 쌕쌕거림이 있나요?" in str(model.seen[0][1].content)
