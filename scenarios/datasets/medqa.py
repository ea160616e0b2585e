"""MedQA (USMLE): Jin et al., "What Disease does this Patient Have?", 2021.

Formats: the unified JSONL (``realidx, question, options{A..D|E}, answer_idx, meta_info``), the original
``US/4_options`` JSONL (same fields, no ``realidx``), and HF ``GBaker/MedQA-USMLE-4-options`` (same fields).
"""

from __future__ import annotations

import ast
from typing import Any

from medcouncil.scenarios.samples import Sample

DATASET_PATH = "../shared/data/mcqa/medqa.test.jsonl"
FIVE_OPTIONS_PATH = "../shared/data/mcqa/medqa_5options.test.jsonl"


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    options = record["options"]
    if isinstance(options, str):  # some copies store the dict as its Python repr
        options = ast.literal_eval(options)
    step = str(record.get("meta_info", ""))
    return Sample(
        id=str(record.get("realidx", index)),
        question=str(record["question"]).strip(),
        options={str(k): str(v) for k, v in sorted(options.items())},
        answer=str(record["answer_idx"]).strip(),
        metadata={"dataset": "medqa", "subset": step} if step else {"dataset": "medqa"},
    )
