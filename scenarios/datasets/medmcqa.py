"""MedMCQA: Pal et al., "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset", CHIL 2022.

Formats: the unified JSONL (``realidx, question, options, answer_idx``) and the raw rows (``opa..opd``, ``cop``,
``subject_name``, ``id``). ``cop`` is 1-based in the published dev files and 0-based in HF
``openlifescienceai/medmcqa`` and its exports: a file's base is settled from its first rows (a ``cop`` of 0 means
0-based, of 4 1-based; neither: 1-based, as published).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.samples import (
    Sample,
    letter_at,
    letter_options,
    options_field,
    record_id,
    text_of,
    whole_number,
)


def record_to_sample(record: dict[str, Any], index: int, cop_base: int = 1) -> Sample:
    if "options" in record:
        options = options_field(record["options"])
        answer = text_of(record["answer_idx"], "answer_idx").strip().upper()
        sample_id = record_id(record, index, "realidx", "id")
        subject = str(record.get("subject_name", ""))
    else:
        options = letter_options([record.get(key) for key in ("opa", "opb", "opc", "opd")])
        answer = letter_at(whole_number(record["cop"], "cop") - cop_base)
        sample_id = record_id(record, index, "id")
        subject = str(record.get("subject_name") or "")
    metadata = {"dataset": "medmcqa", **({"subset": subject} if subject else {})}
    explanation = str(record.get("exp") or "").strip()
    if explanation:  # the dataset's rationale: training data only (``data build``), never shown at evaluation
        metadata["explanation"] = explanation
    return Sample(
        id=sample_id,
        question=text_of(record["question"], "question").strip(),
        options=options,
        answer=answer,
        metadata=metadata,
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """The raw rows: ``opa..opd`` and ``cop``."""
    return {} if isinstance(record, dict) and "opa" in record and "cop" in record else None


def settle(records: list[Any]) -> dict[str, Any]:
    """``cop_base`` from the rows' ``cop`` values: 0 in them → 0, 4 → 1, neither → 1 (the published files).

    Raises:
        ValueError: both 0 and 4 occur.
    """
    cops = set()
    for record in records:
        try:
            cops.add(whole_number(record.get("cop"), "cop"))
        except (ValueError, AttributeError):
            continue
    if {0, 4} <= cops:
        raise ValueError(
            "cop holds both 0 and 4: it cannot count from 0 and from 1 at once; pass --fields "
            "'question=question;options=opa,opb,opc,opd;answer=cop;answer_format=index0' (or index1)"
        )
    return {"cop_base": 0 if 0 in cops else 1}


FORMAT = Format(record_to_sample, matches, order=10, settle=settle)
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
