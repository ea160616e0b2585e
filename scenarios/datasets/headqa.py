"""HEAD-QA: Vilares and Gómez-Rodríguez, "HEAD-QA: A Healthcare Dataset for Complex Reasoning", ACL 2019.

Spanish healthcare specialisation exams (medicine, nursing, pharmacy, psychology, chemistry, biology) with an English
translation. Format: the rows of the Hugging Face ``head_qa`` configs (``qid, qtext, ra, answers[{aid, atext}],
category, name, image``), as JSONL, JSON or CSV. ``ra`` is the ``aid`` of the right answer; the options are lettered
in ``aid`` order. A question that refers to an image (``image`` set) is skipped, naming it: no model here sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format
from medcouncil.scenarios.datasets.samples import (
    Sample,
    letter_at,
    letter_options,
    structure_of,
    text_of,
    whole_number,
)


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    image = record.get("image")
    if any(image.values()) if isinstance(image, dict) else str(image or "").strip():  # a path, or HF's Image struct
        raise ValueError("image: the question refers to an image, which is not shown to a model")
    answers = record["answers"]
    if isinstance(answers, str):
        answers = structure_of(answers, "answers")
    if not isinstance(answers, list) or not all(isinstance(a, dict) and "aid" in a for a in answers):
        raise ValueError("answers: not a list of {aid, atext} objects")
    numbered = sorted(((whole_number(a["aid"], "answers.aid"), a) for a in answers), key=lambda pair: pair[0])
    aids, ordered = [aid for aid, _ in numbered], [answer for _, answer in numbered]
    if len(set(aids)) != len(aids):
        raise ValueError(f"answers: aid repeated ({aids})")
    right = whole_number(record["ra"], "ra")
    if right not in aids:
        raise ValueError(f"ra: {right} is none of the answers' aid ({aids})")
    options = letter_options([answer.get("atext") for answer in ordered])
    exam, qid = str(record.get("name") or "").strip(), str(record.get("qid") or "").strip()
    category = str(record.get("category") or "").strip()
    return Sample(
        id=f"{exam}-{qid}" if exam and qid else qid or str(index),
        question=text_of(record["qtext"], "qtext").strip(),
        options=options,
        answer=letter_at(aids.index(right)),
        metadata={"dataset": "headqa", **({"subset": category} if category else {})},
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """HEAD-QA rows: ``qtext``, ``ra`` and ``answers``."""
    return {} if isinstance(record, dict) and {"qtext", "ra", "answers"} <= set(record) else None


FORMAT = Format(record_to_sample, matches, order=10)
