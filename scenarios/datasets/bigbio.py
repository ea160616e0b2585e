"""The BigBIO QA schema: Fries et al., "BigBIO: A Framework for Data-Centric Biomedical Natural Language
Processing", NeurIPS 2022 Datasets and Benchmarks.

One schema for many biomedical QA sets (``*_bigbio_qa`` configs: MedQA, PubMedQA, BioASQ, ...): ``id, question_id,
document_id, question, type, choices, context, answer`` (a list). An item with choices (``multiple_choice``,
``yesno``) becomes a multiple-choice sample: the choices lettered in order, the answer the letter of the choice
``answer[0]`` names; a non-empty ``context`` (PubMedQA's abstract) is shown before the question, as the PubMedQA
adapter does. Items without choices (``factoid``, ``list``, ``summary``, and BioASQ's ``yesno`` rows, whose
choices are empty) are skipped, naming their type: they have no option to score. The id is BigBIO's ``id``
(``question_id`` repeats: per exam in HEAD-QA, per snippet in BioASQ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format
from medcouncil.scenarios.datasets.pubmedqa import TEMPLATE
from medcouncil.scenarios.datasets.samples import Sample, letter_options, record_id, structure_of, text_of

SCHEMA = {"question", "type", "choices", "answer"}


def _listed(value: Any, name: str) -> list[Any]:
    if isinstance(value, str) and value.strip().startswith("["):
        value = structure_of(value, name)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{name}: not a list")
    return value


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    kind = str(record.get("type") or "").strip()
    choices = _listed(record.get("choices") or [], "choices")
    if not choices:
        raise ValueError(f"type {kind or '?'}: no choices, not a multiple-choice item")
    options = letter_options(choices)
    answers = _listed(record["answer"], "answer")
    if not answers:
        raise ValueError("answer: empty")
    given = text_of(answers[0], "answer").strip()
    letters = [letter for letter, text in options.items() if text.strip().casefold() == given.casefold()]
    if len(letters) != 1:
        found = "none" if not letters else f"{len(letters)}"
        raise ValueError(f"answer: {given[:60]!r} matches {found} of the choices")
    question = text_of(record["question"], "question").strip()
    context = str(record.get("context") or "").strip()
    metadata = {"dataset": "bigbio", **({"subset": kind} if kind else {})}
    if context:
        metadata |= {"bare_question": question, "evidence": context}
        question = TEMPLATE.format(context=context, question=question)
    return Sample(
        id=record_id(record, index, "id", "question_id"),  # question_id repeats (HEAD-QA per exam, BioASQ)
        question=question,
        options=options,
        answer=letters[0],
        metadata=metadata,
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """BigBIO QA rows: ``question, type, choices, answer`` (with ``question_id`` or ``document_id``)."""
    schema = isinstance(record, dict) and set(record) >= SCHEMA
    return {} if schema and {"question_id", "document_id"} & set(record) else None


FORMAT = Format(record_to_sample, matches, order=10)
