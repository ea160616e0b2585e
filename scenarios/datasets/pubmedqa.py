"""PubMedQA: Jin et al., "PubMedQA: A Dataset for Biomedical Research Question Answering", EMNLP 2019.

yes / no / maybe become A / B / C. The question carries the abstract's contexts; the conclusion
(``LONG_ANSWER`` / ``answer_rationale``) is the answer's rationale: never shown to a model by the benchmark, it is
the reasoning of the training data ``medcouncil data build`` writes (with the contexts as numbered evidence).
Formats: the unified JSONL, the raw labelled set (PMID → ``QUESTION, CONTEXTS, final_decision``) and HF
``qiaojin/PubMedQA`` ``pqa_labeled`` (``pubid, question, context{contexts}, final_decision``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcouncil.scenarios.datasets.base import Format, Registered
from medcouncil.scenarios.datasets.samples import Sample, text_of

OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
LETTER = {text: letter for letter, text in OPTIONS.items()}
TEMPLATE = "Context: {context}\n\nQuestion: {question}"


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    if "answer_idx" in record:  # unified: the question already carries the contexts
        return Sample(
            id=str(record.get("realidx", index)),
            question=text_of(record["question"], "question").strip(),
            options=OPTIONS,
            answer=text_of(record["answer_idx"], "answer_idx").strip().upper(),
            metadata={"dataset": "pubmedqa", "explanation": str(record.get("answer_rationale") or "").strip()},
        )
    section = record.get("context") or {}
    if not isinstance(section, dict):
        raise ValueError(f"context: {type(section).__name__}, not an object with 'contexts'")
    listed = record.get("CONTEXTS") or section.get("contexts") or []
    if not isinstance(listed, list):
        raise ValueError(f"contexts: {type(listed).__name__}, not a list of passages")
    contexts = [str(c) for c in listed if c is not None and str(c).strip()]
    question = str(record.get("QUESTION") or record.get("question") or "").strip()
    if not question:
        raise ValueError("question: empty (neither QUESTION nor question holds text)")
    if not contexts:
        raise ValueError("contexts: empty (a PubMedQA item is answered from its abstract)")
    decision = str(record["final_decision"]).strip().lower()
    if decision not in LETTER:
        raise ValueError(f"final_decision: {record['final_decision']!r} is not yes, no or maybe")
    conclusion = record.get("LONG_ANSWER") or record.get("long_answer") or ""
    # For training data (``medcouncil data build``) only: the contexts as numbered evidence beside the bare
    # question, the conclusion as the reasoning. A benchmark shows a model the question below and nothing else.
    metadata = {
        "dataset": "pubmedqa",
        "bare_question": question,
        "evidence": "\n\n".join(contexts),
        "explanation": str(conclusion).strip(),
    }
    return Sample(
        id=str(record.get("pubid", record.get("id", index))),
        question=TEMPLATE.format(context=" ".join(contexts), question=question),
        options=OPTIONS,
        answer=LETTER[decision],
        metadata=metadata,
    )


def matches(record: Any, path: Path) -> dict[str, Any] | None:
    """The raw labelled set and HF rows (``final_decision``), or the unified rows with their rationale."""
    shape = {"final_decision", "answer_rationale", "CONTEXTS"}
    return {} if isinstance(record, dict) and shape & set(record) else None


FORMAT = Format(record_to_sample, matches, order=20)
DATASETS = (
    Registered(
        "pubmedqa",
        FORMAT,
        ("mcqa/pubmedqa.test.jsonl",),
        "qiaojin/PubMedQA",
        hf_split="train",
        subsets=("pqa_labeled",),
    ),
)
