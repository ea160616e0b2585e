"""MMLU medical subjects: Hendrycks et al., "Measuring Massive Multitask Language Understanding", ICLR 2021.

Formats: the unified JSONL (``realidx, question, options, answer_idx, subject``), the original CSV files without a
header (``question, A, B, C, D, answer``; the subject is the file name less ``_test.csv``), and HF ``cais/mmlu``
(``question, subject, choices[4], answer`` 0-3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered, file_subset
from medcouncil.scenarios.datasets.samples import (
    Sample,
    letter_at,
    letter_options,
    options_field,
    record_id,
    text_of,
    whole_number,
)

HF_FIELDS = frozenset({"question", "subject", "choices", "answer"})

SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)


def record_to_sample(record: dict[str, Any] | list[str], index: int, subject: str = "") -> Sample:
    if isinstance(record, list):  # CSV row
        if len(record) != 6:
            raise ValueError(f"expected 6 columns (question, A, B, C, D, answer), got {len(record)}")
        question, *choices, answer = record
        options = letter_options(choices)
        sample_id = f"{subject}-{index}" if subject else str(index)
    elif "choices" in record:  # HF cais/mmlu
        question, options = record["question"], letter_options(record["choices"])
        answer, subject = letter_at(whole_number(record["answer"], "answer")), str(record.get("subject", subject))
        sample_id = f"{subject}-{index}"
    else:
        question, options = record["question"], options_field(record["options"])
        answer, subject = text_of(record["answer_idx"], "answer_idx").upper(), str(record.get("subject", subject))
        sample_id = record_id(record, index, "realidx", "id")
    return Sample(
        id=sample_id,
        question=text_of(question, "question").strip(),
        options=options,
        answer=text_of(answer, "answer").strip().upper(),
        metadata={"dataset": "mmlu", **({"subset": subject} if subject else {})},
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """A header-less CSV row (the subject from the file name), HF ``cais/mmlu`` rows (those fields only: a list of
    texts in ``choices`` and a whole-number ``answer``), or unified rows with a subject. Other records with
    ``choices`` (an id of their own, choices as an object, a text answer...) are left to the generic mapping."""
    if isinstance(record, list):
        return {"subject": file_subset(path)}
    if not isinstance(record, dict):
        return None
    if "choices" in record:
        choices, answer = record.get("choices"), record.get("answer")
        hf_shape = set(record) <= HF_FIELDS and isinstance(choices, list) and all(isinstance(c, str) for c in choices)
        whole = isinstance(answer, int) and not isinstance(answer, bool)
        return {} if hf_shape and whole else None
    return {} if "subject" in record and "options" in record and "answer_idx" in record else None


FORMAT = Format(record_to_sample, matches, order=30)
DATASETS = (Registered("mmlu", FORMAT, ("mcqa/mmlu.test.jsonl",), "cais/mmlu", subsets=SUBJECTS),)
