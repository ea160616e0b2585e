"""PubMedQA: Jin et al., "PubMedQA: A Dataset for Biomedical Research Question Answering", EMNLP 2019.

yes / no / maybe become A / B / C. The question carries the abstract's contexts; the conclusion
(``LONG_ANSWER`` / ``answer_rationale``) is the answer's rationale and is never shown to a model.
Formats: the unified JSONL, the raw labelled set (PMID → ``QUESTION, CONTEXTS, final_decision``) and HF
``qiaojin/PubMedQA`` ``pqa_labeled`` (``pubid, question, context{contexts}, final_decision``).
"""

from __future__ import annotations

from typing import Any

from medcouncil.scenarios.samples import Sample

DATASET_PATH = "../shared/data/mcqa/pubmedqa.test.jsonl"
RAW_PATH = "../shared/data/raw/pubmedqa_test_set.json"
OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
LETTER = {text: letter for letter, text in OPTIONS.items()}
TEMPLATE = "Context: {context}\n\nQuestion: {question}"


def record_to_sample(record: dict[str, Any], index: int) -> Sample:
    if "answer_idx" in record:  # unified: the question already carries the contexts
        return Sample(id=str(record.get("realidx", index)), question=str(record["question"]).strip(),
                      options=OPTIONS, answer=str(record["answer_idx"]), metadata={"dataset": "pubmedqa"})  # fmt: skip
    contexts = record.get("CONTEXTS") or (record.get("context") or {}).get("contexts") or []
    question = record.get("QUESTION") or record.get("question") or ""
    return Sample(
        id=str(record.get("pubid", record.get("id", index))),
        question=TEMPLATE.format(context=" ".join(str(c) for c in contexts), question=question),
        options=OPTIONS,
        answer=LETTER[str(record["final_decision"]).strip().lower()],
        metadata={"dataset": "pubmedqa"},
    )
