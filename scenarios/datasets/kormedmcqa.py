"""KorMedMCQA: Kweon et al., "KorMedMCQA: Multi-Choice Question Answering Benchmark for Korean Healthcare
Professional Licensing Examinations", 2024.

HF ``sean0042/KorMedMCQA`` (configs doctor / nurse / pharm / dentist): ``subject, year, period, q_number, question,
A..E, answer`` with ``answer`` 1-5 (1 = A). Not available offline here; ``tests`` ship a small Korean fixture.
"""

from __future__ import annotations

from typing import Any

from medcouncil.scenarios.datasets.samples import LETTERS, Sample, letter_at, letter_options, whole_number

HF_DATASET = "sean0042/KorMedMCQA"
SUBSETS = ("doctor", "nurse", "pharm", "dentist")


def record_to_sample(record: dict[str, Any], index: int, subset: str = "") -> Sample:
    options = letter_options([record.get(letter) for letter in LETTERS])
    answer = letter_at(whole_number(record["answer"], "answer") - 1)
    parts = [str(record.get(key, "")) for key in ("year", "period", "q_number")]
    sample_id = "-".join([subset or str(record.get("subject", "")), *parts]) if any(parts) else str(index)
    return Sample(id=sample_id, question=str(record["question"]).strip(), options=options, answer=answer,
                  metadata={"dataset": "kormedmcqa", "subset": subset or str(record.get("subject", "")),
                            "language": "ko"})  # fmt: skip
