"""MedMCQA: Pal et al., "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset", CHIL 2022.

Formats: the unified JSONL (``realidx, question, options, answer_idx``) and the raw rows (``opa..opd``, ``cop``,
``subject_name``, ``id``). ``cop`` is 1-based in the published dev files and 0-based in HF
``openlifescienceai/medmcqa``: pass ``cop_base``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.samples import Sample, letter_at, letter_options, options_field, whole_number


def record_to_sample(record: dict[str, Any], index: int, cop_base: int = 1) -> Sample:
    if "options" in record:
        options = options_field(record["options"])
        answer = str(record["answer_idx"])
        sample_id = str(record.get("realidx", index))
        subject = str(record.get("subject_name", ""))
    else:
        options = letter_options([record.get(key) for key in ("opa", "opb", "opc", "opd")])
        answer = letter_at(whole_number(record["cop"], "cop") - cop_base)
        sample_id = str(record.get("id", index))
        subject = str(record.get("subject_name") or "")
    metadata = {"dataset": "medmcqa", **({"subset": subject} if subject else {})}
    explanation = str(record.get("exp") or "").strip()
    if explanation:  # the dataset's rationale: training data only (``data build``), never shown at evaluation
        metadata["explanation"] = explanation
    return Sample(
        id=sample_id, question=str(record["question"]).strip(), options=options, answer=answer, metadata=metadata
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """The raw rows: ``opa..opd`` and ``cop``."""
    return {} if isinstance(record, dict) and "opa" in record and "cop" in record else None


FORMAT = Format(record_to_sample, matches, order=10)
DATASETS = (
    Registered(
        "medmcqa",
        FORMAT,
        ("mcqa/medmcqa.test.jsonl",),
        "openlifescienceai/medmcqa",
        hf_split="validation",
        hf_args={"cop_base": 0},
    ),
)
