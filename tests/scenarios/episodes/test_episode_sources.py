"""Episode sources: AgentClinic OSCE, NEJM-style records, medcouncil's own case JSON (a Korean fixture) and
multiple-choice items made into cases; malformed rows named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.scenarios.datasets.registry import load_dataset
from medcouncil.scenarios.datasets.samples import MalformedRow
from medcouncil.scenarios.episodes.load import load_cases
from medcouncil.scenarios.episodes.sources import from_mcqa, nejm
from medcouncil.scenarios.episodes.sources.facts import classify, flatten, humanise
from medcouncil.serving.common.errors import ConfigError
from tests.conftest import SHARED

FIXTURES = Path(__file__).parents[1] / "fixtures"
AGENTCLINIC = SHARED / "data" / "episodes" / "agentclinic_medqa.jsonl"
needs_shared = pytest.mark.skipif(not AGENTCLINIC.exists(), reason=f"shared data not found at {AGENTCLINIC}")


def test_nested_sections_become_named_findings() -> None:
    assert humanise("Past_Medical_History") == "Past medical history" and humanise("Chest_CT") == "Chest CT"
    found = flatten({"Vital_Signs": {"Blood_Pressure": "125/80 mmHg", "Pulse": ""}, "Signs": ["a", "b"]})
    assert [(f.name, f.result) for f in found] == [("Vital signs / Blood pressure", "125/80 mmHg"), ("Signs", "a; b")]
    assert classify("Laboratory studies show: Hb 9 g/dL; a renal biopsy is pending.") == ("test", "Laboratory studies")
    assert classify("A chest x-ray shows consolidation.") == ("test", "Chest X-ray")
    assert classify("Her pulse is 110/min.") == ("exam", "Vital signs")
    assert classify("She smokes a pack a day.") == ("patient", "History")


@needs_shared
def test_agentclinic_cases() -> None:
    cases, skipped = load_cases("agentclinic")
    assert len(cases) == 107 and skipped == []
    first = cases[0]
    assert first.diagnosis == "Myasthenia gravis" and first.opening == "35-year-old female, Double vision"
    assert first.objective.startswith("Assess and diagnose the patient presenting with double vision")
    assert "Symptoms / Secondary symptoms" in {f.name for f in first.patient}
    assert {f.name for f in first.tests} >= {
        "Blood tests / Acetylcholine receptor antibodies",
        "Imaging / Chest CT / Findings",
    }
    assert "Vital signs / Blood pressure" in {f.name for f in first.exam}
    assert all(c.patient and (c.exam or c.tests) and c.options is None for c in cases)
    assert sum(bool(c.tests) for c in cases) > 100
    assert load_cases("agentclinic", limit=5)[0] == cases[:5]


def test_nejm_records() -> None:
    record = {
        "question": "What is the diagnosis?",
        "patient_info": "A 40-year-old man has a rash. It began 2 weeks ago after a hike. He takes no medications.",
        "physical_exams": "Temperature is 37.9°C and pulse is "
        "96/min. Examination shows an expanding erythematous plaque with central clearing. Serologic testing "
        "for Borrelia antibodies is positive.",
        "answers": [{"text": "Cellulitis", "correct": False}, {"text": "Erythema migrans", "correct": True}],
    }
    case = nejm.record_to_case(record, 0)
    assert case.opening == "A 40-year-old man has a rash." and case.options == {
        "A": "Cellulitis",
        "B": "Erythema migrans",
    }
    assert case.answer == "B" and case.diagnosis == "Erythema migrans"
    assert [f.name for f in case.patient] == ["History", "History 2"]
    assert [f.name for f in case.exam] == ["Vital signs", "Physical examination"]
    assert [f.name for f in case.tests] == ["Laboratory studies"]
    with pytest.raises(ValueError, match="2 marked correct"):
        nejm.record_to_case({**record, "answers": [{"text": "x", "correct": True}, {"text": "y", "correct": True}]}, 0)


@needs_shared
def test_mcqa_items_become_cases_losing_nothing_and_revealing_nothing() -> None:
    samples, _ = load_dataset("medqa")
    cases, _ = load_cases("medqa", limit=60)
    assert len(cases) == 60 and cases == load_cases("medqa", limit=60)[0]  # deterministic
    by_id = {s.id: s for s in samples}
    for case in cases:
        sample = by_id[case.id]
        assert case.options == sample.options and case.diagnosis == sample.options[sample.answer]
        parts = [case.opening, *(f.result for f in case.facts)]
        sentences = from_mcqa.split_sentences(sample.question)
        # Every sentence is the opening, a fact or part of the question asked; none twice.
        for sentence in sentences:
            placed = sum(sentence == part for part in parts) + (sentence.strip("\"' ") in case.objective)
            assert placed >= 1, (case.id, sentence)
        assert len(parts) == len(set(parts)) and case.objective not in parts
        assert case.opening == sentences[0]  # the doctor starts with the first sentence only
    counts = [len(c.patient) + len(c.exam) + len(c.tests) for c in cases]
    assert min(counts) >= 1 and sum(len(c.tests) for c in cases) > 10 and sum(len(c.exam) for c in cases) > 20


def test_native_cases_with_a_korean_fixture_and_malformed_rows(tmp_path: Path) -> None:
    cases, skipped = load_cases(str(FIXTURES / "episodes_ko.jsonl"))
    assert skipped == [] and len(cases) == 1
    korean = cases[0]
    assert korean.language == "ko" and korean.diagnosis == "천식" and "asthma" in korean.aliases
    assert korean.tests[0].cost == 120.0 and korean.tests[0].name == "Spirometry"
    good = json.loads((FIXTURES / "episodes_ko.jsonl").read_text())
    path = tmp_path / "cases.jsonl"
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "diagnosis": " "}),
        "[1, 2]",
        json.dumps({**good, "patient": [], "exam": [], "tests": []}),
        json.dumps({**good, "options": {"A": "x", "C": "y"}, "answer": "A"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    cases, skipped = load_cases(str(path))
    assert len(cases) == 1
    reasons = [str(s) for s in skipped]
    assert reasons[0].startswith(f"{path}:2: ") and reasons[1] == f"{path}:3: diagnosis: empty"
    assert reasons[2] == f"{path}:4: expected an object, got list"
    assert reasons[3].startswith(f"{path}:5: patient, exam, tests: no fact") and "letters must be A" in reasons[4]
    with pytest.raises(MalformedRow, match=":2:"):
        load_cases(str(path), strict=True)


def test_an_unknown_source_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither an episode file"):
        load_cases(str(tmp_path / "missing.jsonl"))


def test_case_schema_refuses_inconsistent_cases() -> None:
    with pytest.raises(ValueError, match="answer: a gold letter needs options"):
        ClinicalCase(
            id="1",
            objective="o",
            opening="x",
            patient=(Finding(name="History", result="h"),),
            diagnosis="d",
            answer="A",
        )


def _osce(diagnosis: object, actor: object = None) -> dict[str, object]:
    patient = {"Demographics": "35-year-old female", "Symptoms": {"Primary_Symptom": "Double vision"}}
    return {
        "OSCE_Examination": {
            "Objective_for_Doctor": "Diagnose the patient.",
            "Patient_Actor": patient if actor is None else actor,
            "Physical_Examination_Findings": {"Ptosis": "worse in the evening"},
            "Test_Results": {"Acetylcholine_Receptor_Antibodies": "positive"},
            "Correct_Diagnosis": diagnosis,
        }
    }


def test_agentclinic_cases_from_a_json_array_and_a_file_whose_first_line_is_broken(tmp_path: Path) -> None:
    cases = [_osce("Myasthenia gravis"), _osce(["Myasthenia gravis", "MG"])]
    array = tmp_path / "cases.json"
    array.write_text(json.dumps(cases, indent=2))
    loaded, skipped = load_cases(str(array))
    assert [(c.id, c.diagnosis, c.aliases) for c in loaded] == [
        ("1", "Myasthenia gravis", ()),
        ("2", "Myasthenia gravis", ("MG",)),  # a list: the first name, the others accepted aliases
    ]
    assert skipped == []
    saved_as_json = tmp_path / "lines.json"  # one case per line, though named .json
    saved_as_json.write_text("".join(json.dumps(c) + "\n" for c in cases))
    assert [c.id for c in load_cases(str(saved_as_json))[0]] == ["1", "2"]
    lines = tmp_path / "cases.txt"
    bad_rows = [_osce(None), _osce("X", actor="a string"), _osce([])]
    lines.write_text("{broken\n" + "".join(json.dumps(c) + "\n" for c in [*cases, *bad_rows]))
    loaded, skipped = load_cases(str(lines))
    assert [c.id for c in loaded] == ["2", "3"]
    assert [str(row) for row in skipped] == [
        f"{lines}:1: not JSON (Expecting property name enclosed in double quotes, column 2)",
        f"{lines}:4: Correct_Diagnosis: null",
        f"{lines}:5: Patient_Actor: str, not an object of the patient's facts",
        f"{lines}:6: Correct_Diagnosis: an empty list",
    ]


def test_korean_items_become_cases_with_facts_to_ask_for(tmp_path: Path) -> None:
    item = {
        "question": "55세 남자가 가슴 통증으로 응급실에 왔다. 통증은 3일 전 시작되었다. 혈압은 90/60 mmHg이다. "
        "가장 가능성이 높은 진단은?",
        "A": "급성 심근경색",
        "B": "폐색전증",
        "answer": 1,
    }
    path = tmp_path / "doctor.jsonl"
    path.write_text(json.dumps(item, ensure_ascii=False) + "\n", encoding="utf-8")
    (case,), skipped = load_cases(str(path))
    assert skipped == [] and case.language == "ko" and case.diagnosis == "급성 심근경색"
    assert case.opening == "55세 남자가 가슴 통증으로 응급실에 왔다."
    assert case.objective == "가장 가능성이 높은 진단은?"
    facts = [f.result for f in (*case.patient, *case.exam, *case.tests)]
    assert sorted(facts) == ["통증은 3일 전 시작되었다.", "혈압은 90/60 mmHg이다."]
    one = tmp_path / "one.jsonl"  # nothing to ask for: the skipped item is named by its id, not a line 0
    one.write_text(json.dumps({**item, "question": "가장 가능성이 높은 진단은?"}, ensure_ascii=False) + "\n")
    cases, skipped = load_cases(str(one))
    assert cases == [] and [str(row) for row in skipped] == [
        f"{one}: item 0: patient, exam, tests: no fact at all to ask for"
    ]
