"""Dataset adapters on small fixtures and on the real shared files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcouncil.scenarios.datasets import kormedmcqa, medmcqa, medqa, mmlu, pubmedqa
from medcouncil.scenarios.datasets.samples import MalformedRow, Sample, load_samples
from tests.conftest import SHARED

FIXTURES = Path(__file__).parents[1] / "fixtures"
DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is absent (shared benchmark data)")


def test_schema_is_frozen_and_checked() -> None:
    sample = Sample(id="1", question="q?", options={"A": "x", "B": "y"}, answer="B")
    with pytest.raises(ValueError, match="frozen"):
        sample.answer = "A"
    with pytest.raises(ValueError, match="answer: 'C' is not one of the options A-B"):
        Sample(id="1", question="q?", options={"A": "x", "B": "y"}, answer="C")
    with pytest.raises(ValueError, match="none missing, got A, C"):
        Sample(id="1", question="q?", options={"A": "x", "C": "y"}, answer="A")
    with pytest.raises(ValueError, match=r"letters out of order \(B, A\)"):
        Sample(id="1", question="q?", options={"B": "x", "A": "y"}, answer="A")
    with pytest.raises(ValueError, match="options: 11 given, at most 10"):
        Sample(id="1", question="q?", options={chr(65 + i): str(i) for i in range(11)}, answer="A")
    with pytest.raises(ValueError, match="options: option B is empty"):
        Sample(id="1", question="q?", options={"A": "x", "B": " "}, answer="A")
    ten = Sample(id="1", question="q?", options={chr(65 + i): str(i) for i in range(10)}, answer="J")
    assert list(ten.options)[-1] == "J"


def test_kormedmcqa_fixture_answers_one_to_five_and_bad_rows(tmp_path: Path) -> None:
    path = FIXTURES / "kormedmcqa_doctor.jsonl"
    samples, skipped = load_samples(path, kormedmcqa.record_to_sample, subset="doctor")
    assert [s.answer for s in samples] == ["A", "B", "C"]
    assert samples[0].id == "doctor-2023-1-1" and samples[0].metadata["subset"] == "doctor"
    assert list(samples[0].options) == ["A", "B", "C", "D", "E"] and samples[0].options["A"] == "천식"
    assert [str(e) for e in skipped] == [
        f"{path}:4: answer: 'I' is not one of the options A-E",
        f"{path}:5: missing field 'answer'",
        f"{path}:6: not JSON (Expecting value, column 1)",
    ]
    with pytest.raises(MalformedRow, match=rf"{path}:4:"):
        load_samples(path, kormedmcqa.record_to_sample, strict=True)


def test_raw_formats_on_small_rows() -> None:
    raw = {
        "question": "Q?",
        "opa": "a",
        "opb": "b",
        "opc": "c",
        "opd": "d",
        "cop": 0,
        "id": "x",
        "subject_name": "Anatomy",
    }
    assert medmcqa.record_to_sample(raw, 0, cop_base=0).answer == "A"  # HF openlifescienceai/medmcqa
    assert medmcqa.record_to_sample({**raw, "cop": 4}, 0).answer == "D"  # the published dev files
    hf_mmlu = {"question": "Q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 2}
    assert mmlu.record_to_sample(hf_mmlu, 3).answer == "C"
    pqa = {
        "pubid": 1,
        "question": "Does X help?",
        "context": {"contexts": ["One.", "Two."]},
        "final_decision": "maybe",
        "long_answer": "The conclusion.",
    }
    sample = pubmedqa.record_to_sample(pqa, 0)
    assert sample.answer == "C" and "One. Two." in sample.question and "conclusion" not in sample.question


@needs_shared
@pytest.mark.parametrize(
    ("relative", "adapter", "rows", "letters"),
    [
        ("mcqa/medqa.test.jsonl", medqa.record_to_sample, 1273, "ABCD"),
        ("mcqa/medqa_5options.test.jsonl", medqa.record_to_sample, 1273, "ABCDE"),
        ("mcqa/medmcqa.test.jsonl", medmcqa.record_to_sample, 2816, "ABCD"),
        ("mcqa/pubmedqa.test.jsonl", pubmedqa.record_to_sample, 500, "ABC"),
        ("mcqa/mmlu.test.jsonl", mmlu.record_to_sample, 1089, "ABCD"),
        ("raw/medqa_us4_test.jsonl", medqa.record_to_sample, 1273, "ABCD"),
        ("raw/medmcqa_dev.jsonl", medmcqa.record_to_sample, 4183, "ABCD"),
        ("raw/pubmedqa_test_set.json", pubmedqa.record_to_sample, 500, "ABC"),
        ("raw/mmlu/anatomy_test.csv", mmlu.record_to_sample, 135, "ABCD"),
    ],
)
def test_shared_files(relative: str, adapter: object, rows: int, letters: str) -> None:
    samples, skipped = load_samples(DATA / relative, adapter, strict=True)
    assert len(samples) == rows and skipped == []
    assert all("".join(s.options) == letters and s.answer in letters for s in samples)
    assert len({s.id for s in samples}) == rows
    if "pubmedqa" in relative:
        rationales = [
            json.loads(line).get("answer_rationale", "") for line in (DATA / "mcqa/pubmedqa.test.jsonl").open()
        ]
        shown = " ".join(s.question for s in samples)
        assert not any(r and r[:80] in shown for r in rationales[:50])  # the conclusion is never shown
