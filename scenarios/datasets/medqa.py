"""MedQA (USMLE): Jin et al., "What Disease does this Patient Have?", 2021.

Formats: the unified JSONL (``realidx, question, options{A..D|E}, answer_idx, meta_info``), the original
``US/4_options`` JSONL (same fields, no ``realidx``), and HF ``GBaker/MedQA-USMLE-4-options`` (same fields).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.samples import Sample, options_field, record_id, text_of


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    options = options_field(record["options"])  # some copies store the dict as its Python repr
    step = str(record.get("meta_info", ""))
    return Sample(
        id=record_id(record, index, "realidx", "id"),
        question=text_of(record["question"], "question").strip(),
        options=options,
        answer=text_of(record["answer_idx"], "answer_idx").strip().upper(),
        metadata={"dataset": "medqa", "subset": step} if step else {"dataset": "medqa"},
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """``options`` and ``answer_idx`` (the unified and the original rows)."""
    return {} if isinstance(record, dict) and "options" in record and "answer_idx" in record else None


FORMAT = Format(record_to_sample, matches, order=40)
DATASETS = (
    Registered("medqa", FORMAT, ("mcqa/medqa.test.jsonl",), "GBaker/MedQA-USMLE-4-options"),
    Registered("medqa5", FORMAT, ("mcqa/medqa_5options.test.jsonl",)),
)
