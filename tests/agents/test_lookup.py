"""The lookup patient and measurement agents answer only what is asked, from the case's facts."""

from __future__ import annotations

import itertools

import pytest

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.lookup import (
    GENERIC,
    NOT_AVAILABLE,
    PATIENT_UNKNOWN,
    measurement_result,
    names_it,
    patient_answer,
    words,
)
from medcouncil.scenarios.episodes.load import load_cases
from tests.conftest import SHARED

CASE = ClinicalCase(
    id="1",
    objective="Diagnose.",
    opening="35-year-old female, double vision",
    patient=(
        Finding(name="Social history", result="Smokes a pack a day; drinks wine occasionally."),
        Finding(name="Symptoms / Secondary symptoms", result="Difficulty climbing stairs; arm weakness"),
        Finding(name="Past medical history", result="No significant past medical history."),
    ),
    exam=(
        Finding(name="Vital signs / Blood pressure", result="125/80 mmHg"),
        Finding(name="Vital signs / Heart rate", result="72 bpm"),
        Finding(name="Neurological examination / Cranial nerves", result="Ptosis worse on upward gaze."),
    ),
    tests=(
        Finding(name="Blood tests / Acetylcholine receptor antibodies", result="Present (elevated)", cost=150.0),
        Finding(name="Imaging / Chest CT / Findings", result="No thymoma.", cost=400.0),
    ),
    diagnosis="Myasthenia gravis",
)


def test_words_fold_plurals_and_drop_common_words() -> None:
    assert words("Do you have any SYMPTOMS or allergies?") == {"symptom", "allergy"}
    assert words("ECG and BP") == {"electrocardiogram", "blood", "pressure"}
    assert not names_it(words("Any findings?"), Finding(name="Imaging / Chest CT / Findings", result="x"))


def test_the_patient_tells_what_is_asked_and_nothing_else() -> None:
    smoke = patient_answer(CASE, "Do you smoke?")
    assert smoke.reply.startswith("Social history: Smokes") and len(smoke.revealed) == 1
    assert patient_answer(CASE, "Tell me about your past medical history.").revealed == (CASE.patient[2],)
    assert patient_answer(CASE, "Any other symptoms?").revealed == (CASE.patient[1],)
    assert patient_answer(CASE, "Have you travelled abroad?").reply == PATIENT_UNKNOWN
    assert patient_answer(CASE, "What is my blood pressure? Is it myasthenia?").reply == PATIENT_UNKNOWN


def test_the_measurement_agent_returns_what_is_named_with_its_cost() -> None:
    assert measurement_result(CASE, "Blood pressure").revealed == (CASE.exam[0],)
    vitals = measurement_result(CASE, "Check vital signs")
    assert vitals.revealed == CASE.exam[:2] and vitals.cost == 0.0
    ct = measurement_result(CASE, "REQUEST TEST: chest CT")
    assert (
        ct.revealed == (CASE.tests[1],)
        and ct.cost == 400.0
        and ct.reply == "Imaging / Chest CT / Findings: No thymoma."
    )
    assert measurement_result(CASE, "acetylcholine receptor antibodies").cost == 150.0
    assert measurement_result(CASE, "Lumbar puncture").reply == NOT_AVAILABLE.format(request="Lumbar puncture")
    assert measurement_result(CASE, "Any findings? Results?").revealed == ()


@pytest.mark.skipif(not (SHARED / "data" / "episodes").exists(), reason="shared data not found")
def test_no_request_reveals_a_fact_it_does_not_name_on_real_cases() -> None:
    """On AgentClinic and MCQA-derived cases, every revealed fact is named by the request or shares a content word
    with it (patient), and a request that names nothing of a case reveals nothing of it."""
    cases = load_cases("agentclinic", limit=30)[0] + load_cases("medqa", limit=30)[0]
    requests = [
        "Do you smoke?",
        "Blood pressure",
        "Chest X-ray",
        "Tell me about your family",
        "Serum sodium",
        "ECG",
        "Laboratory studies",
        "Any fever?",
        "Physical examination",
        "What is the diagnosis?",
    ]
    revealed_any = 0
    for case, request in itertools.product(cases, requests):
        asked = words(request)
        for fact in patient_answer(case, request).revealed:
            assert fact in case.patient and (names_it(asked, fact) or (asked - GENERIC) & words(fact.result))
        for fact in measurement_result(case, request).revealed:
            assert fact in case.exam + case.tests and names_it(asked, fact)
        revealed_any += bool(measurement_result(case, request).revealed)
    assert revealed_any > 30
    unrelated = patient_answer(cases[0], "zzz qqq")
    assert unrelated.revealed == () and measurement_result(cases[0], "zzz qqq").revealed == ()
