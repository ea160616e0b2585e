"""Which benchmark items a corpus would leak into retrieval, recorded when it is indexed (``index add``).

A document leaks an evaluation item when it carries that item's id and comes from the item's own corpus (a MedMCQA
explanation with its question's id, a PubMedQA abstract with its PubMed id), or when the question it belongs to is
an evaluation question (the same text after :func:`decontamination.normalise_text`). The evaluation items are every
registered dataset found locally (nothing is fetched). A leaking document is indexed with the item's id as its
``item_id``, so the contamination guard keeps it out of that item's evidence, and the match is appended to
``<store>/leaks/<collection>.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from medcouncil.scenarios.training.decontamination import EvalItem, normalise_text
from medcouncil.tools.chunking import Document


class Leak(BaseModel):
    source: str
    """The indexed file."""
    document_item: str
    """The document's own item id (empty if none)."""
    eval_source: str
    eval_id: str
    kind: str
    """``id`` (the item's own text) or ``question`` (the item's question)."""


def find_leaks(documents: Sequence[Document], evals: Sequence[EvalItem]) -> tuple[list[Document], list[Leak]]:
    """The documents, those that leak an item re-labelled with its id, and the leaks found."""
    by_id = {(item.source, item.id): item for item in evals}
    by_question: dict[str, EvalItem] = {}
    for item in evals:
        by_question.setdefault(normalise_text(item.question), item)
    labelled: list[Document] = []
    leaks: list[Leak] = []
    for document in documents:
        corpus = document.extra.get("corpus", "")
        match, kind = by_id.get((corpus, document.item_id)) if document.item_id else None, "id"
        if match is None and document.question:
            match, kind = by_question.get(normalise_text(document.question)), "question"
        if match is None:
            labelled.append(document)
            continue
        leaks.append(
            Leak(
                source=document.source,
                document_item=document.item_id,
                eval_source=match.source,
                eval_id=match.id,
                kind=kind,
            )
        )
        labelled.append(dataclasses.replace(document, item_id=match.id))
    return labelled, leaks


def recorded_labels(folder: Path, collection: str, documents: Sequence[Document]) -> tuple[list[Document], int]:
    """The documents with the labels of the collection's leak record applied (a re-add without the leak check keeps
    the guard on what an earlier check found), and how many were relabelled. An unreadable record changes nothing."""
    path = folder / "leaks" / f"{collection}.jsonl"
    labels: dict[tuple[str, str], str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except OSError:
        lines = []
    for line in lines:
        try:
            leak = Leak.model_validate_json(line)
        except ValueError:
            continue
        if leak.document_item:
            labels[(leak.source, leak.document_item)] = leak.eval_id
    labelled = [
        dataclasses.replace(d, item_id=labels[(d.source, d.item_id)]) if (d.source, d.item_id) in labels else d
        for d in documents
    ]
    return labelled, sum((d.source, d.item_id) in labels for d in documents)


def record_leaks(folder: Path, collection: str, leaks: Sequence[Leak]) -> Path:
    """Adds ``leaks`` to the collection's record (once each: re-adding a corpus records nothing twice)."""
    path = folder / "leaks" / f"{collection}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    known: set[str] = set()
    if path.exists():
        known = {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    fresh = [
        line for line in (json.dumps(leak.model_dump(), ensure_ascii=False) for leak in leaks) if line not in known
    ]
    if fresh:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in dict.fromkeys(fresh)))
    return path


def describe(leaks: Sequence[Leak]) -> str:
    counts = Counter(leak.eval_source for leak in leaks)
    return ", ".join(f"{source} {count}" for source, count in counts.most_common())
