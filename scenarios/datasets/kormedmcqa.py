"""KorMedMCQA: Kweon et al., "KorMedMCQA: Multi-Choice Question Answering Benchmark for Korean Healthcare
Professional Licensing Examinations", 2024.

HF ``sean0042/KorMedMCQA`` (configs doctor / nurse / pharm / dentist): ``subject, year, period, q_number, question,
A..E, answer`` with ``answer`` 1-5 (1 = A). Not available offline here; ``tests`` ship a small Korean fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered, file_subset
from medcouncil.scenarios.datasets.samples import LETTERS, Sample, letter_at, letter_options, whole_number

HF_DATASET = "sean0042/KorMedMCQA"
SUBSETS = ("doctor", "nurse", "pharm", "dentist")


def record_to_sample(record: dict[str, Any], index: int, subset: str = "") -> Sample:
    options = letter_options([record.get(letter) for letter in LETTERS])
    answer = letter_at(whole_number(record["answer"], "answer") - 1)
    parts = [str(record.get(key, "")) for key in ("year", "period", "q_number")]
    sample_id = "-".join([subset or str(record.get("subject", "")), *parts]) if any(parts) else str(index)
    return Sample(
        id=sample_id,
        question=str(record["question"]).strip(),
        options=options,
        answer=answer,
        metadata={"dataset": "kormedmcqa", "subset": subset or str(record.get("subject", "")), "language": "ko"},
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """Options in columns ``A``, ``B``... and ``answer``; a file named for a subset gives it."""
    if not isinstance(record, dict) or not {"A", "B", "answer"} <= set(record):
        return None
    subset = file_subset(path)
    return {"subset": subset if subset in SUBSETS else ""}


FORMAT = Format(record_to_sample, matches, order=50, takes_subset=True)
DATASETS = (
    Registered(
        "kormedmcqa", FORMAT, ("kormedmcqa/{subset}.jsonl", "kormedmcqa/{subset}.csv"), HF_DATASET, subsets=SUBSETS
    ),
)
