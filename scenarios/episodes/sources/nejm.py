"""NEJM-style case records (AgentClinic's NEJM cases): ``question``, ``patient_info`` (the history as text),
``physical_exams`` (examination and test findings as text) and ``answers`` (``[{text, correct}]``: the options,
one correct). Images are not used: text only."""

from __future__ import annotations

import re
from typing import Any

from medcouncil.agents.cases import LETTERS, ClinicalCase
from medcouncil.scenarios.episodes.sources.base import CaseSource
from medcouncil.scenarios.episodes.sources.facts import sort_sentences

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\uac00-\ud7a3])")


def is_nejm(record: dict[str, Any]) -> bool:
    return "patient_info" in record and isinstance(record.get("answers"), list)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(str(text).split())) if s.strip()]


def record_to_case(record: dict[str, Any], index: int) -> ClinicalCase:
    """Raises: KeyError / ValueError (no answers, no or several correct answers, an invalid case)."""
    answers = [a for a in record["answers"] if isinstance(a, dict) and str(a.get("text", "")).strip()]
    if len(answers) > len(LETTERS):
        raise ValueError(f"answers: {len(answers)} given, at most {len(LETTERS)} are supported")
    correct = [n for n, a in enumerate(answers) if a.get("correct") is True]
    if len(correct) != 1:
        raise ValueError(f"answers: {len(correct)} marked correct, exactly one is needed")
    history = sentences(record.get("patient_info") or "")
    exams = sentences(record.get("physical_exams") or "")
    options = {LETTERS[n]: str(a["text"]).strip() for n, a in enumerate(answers)}
    found = sort_sentences(history[1:] + exams)
    from_exam = set(exams)  # a sentence of the examination text that reads like history is still an exam finding
    told = [f for f in found["patient"] if f.result not in from_exam]
    examined = found["exam"] + [
        f.model_copy(update={"name": f"Examination: {f.name}"}) for f in found["patient"] if f.result in from_exam
    ]
    return ClinicalCase(
        id=str(record.get("id", index + 1)),
        objective=str(record.get("question") or "").strip(),
        opening=history[0] if history else "",
        patient=tuple(told),
        exam=tuple(examined),
        tests=tuple(found["test"]),
        diagnosis=options[LETTERS[correct[0]]],
        options=options,
        answer=LETTERS[correct[0]],
        source="nejm",
    )


SOURCE = CaseSource(record_to_case, is_nejm, order=20)
