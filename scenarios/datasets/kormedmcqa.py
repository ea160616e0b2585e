"""KorMedMCQA: Kweon et al., "KorMedMCQA: Multi-Choice Question Answering Benchmark for Korean Healthcare
Professional Licensing Examinations", 2024.

HF ``sean0042/KorMedMCQA`` (configs doctor / nurse / pharm / dentist): ``subject, year, period, q_number, question,
A..E, answer`` with ``answer`` 1-5 (1 = A). Not available offline here; ``tests`` ship a small Korean fixture.
Read as KorMedMCQA: such rows in Korean (Hangul in the question or an option), with KorMedMCQA's own fields
(``q_number``, ``period``) or in a file named for a subset; other ``A``..``J`` + ``answer`` files are left to the
generic mapping. The answer may also be a letter; an index file counting from 0 is told from its rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered, file_subset
from medcouncil.scenarios.datasets.samples import (
    LETTERS,
    Sample,
    letter_at,
    letter_options,
    record_id,
    text_of,
    whole_number,
)

HF_DATASET = "sean0042/KorMedMCQA"
SUBSETS = ("doctor", "nurse", "pharm", "dentist")
HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def _answer(value: Any, base: int) -> str:
    if isinstance(value, str) and value.strip().upper() in LETTERS:
        return value.strip().upper()
    return letter_at(whole_number(value, "answer") - base)


def record_to_sample(record: dict[str, Any], index: int, subset: str = "", answer_base: int = 1) -> Sample:
    options = letter_options([record.get(letter) for letter in LETTERS])
    answer = _answer(record["answer"], answer_base)
    parts = [str(record.get(key, "")) for key in ("year", "period", "q_number")]
    if any(parts):
        sample_id = "-".join([subset or str(record.get("subject", "")), *parts])
    else:
        sample_id = record_id(record, index, "id")
    question = text_of(record["question"], "question").strip()
    korean = bool(HANGUL.search(question) or any(HANGUL.search(text) for text in options.values()))
    return Sample(
        id=sample_id,
        question=question,
        options=options,
        answer=answer,
        metadata={
            "dataset": "kormedmcqa",
            "subset": subset or str(record.get("subject", "")),
            **({"language": "ko"} if korean else {}),
        },
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """Options in columns ``A``, ``B``... and ``answer``, in Korean, with KorMedMCQA's fields or in a file named for
    a subset (which gives the subset)."""
    if not isinstance(record, dict) or not {"A", "B", "answer"} <= set(record):
        return None
    subset = file_subset(path)
    texts = [str(record.get(key) or "") for key in ("question", *LETTERS)]
    korean = any(HANGUL.search(text) for text in texts)
    if not (korean or {"q_number", "period"} <= set(record) or subset in SUBSETS):
        return None
    return {"subset": subset if subset in SUBSETS else ""}


def settle(records: list[Any]) -> dict[str, Any]:
    """``answer_base``: 0 when an index answer of 0 occurs, else 1 (KorMedMCQA's 1-5).

    Raises:
        ValueError: a 0 and an answer naming an item's last option past the 0-based letters (5 of five options).
    """
    zero = top = False
    for record in records:
        try:
            number = whole_number(record.get("answer"), "answer")
            given = len(letter_options([record.get(letter) for letter in LETTERS])) if number else 0
        except (ValueError, AttributeError):
            continue  # reported when the row is read
        zero, top = zero or number == 0, top or (number > 0 and number == given)
    if zero and top:
        raise ValueError("answer holds 0 and an item's option count: it cannot count from 0 and from 1 at once")
    return {"answer_base": 0 if zero else 1}


FORMAT = Format(record_to_sample, matches, order=50, takes_subset=True, settle=settle)
DATASETS = (
    Registered(
        "kormedmcqa", FORMAT, ("kormedmcqa/{subset}.jsonl", "kormedmcqa/{subset}.csv"), HF_DATASET, subsets=SUBSETS
    ),
)
