"""Ingest of the real shared corpora: BioASQ snippets and MedMCQA explanations (../shared/data/raw)."""

from __future__ import annotations

import json

import pytest

from medcouncil.tools.corpora import read_documents
from medcouncil.tools.knowledge import KnowledgeBase, SearchGuard
from tests.conftest import SHARED

RAW = SHARED / "data" / "raw"
pytestmark = pytest.mark.skipif(not RAW.exists(), reason=f"{RAW} is absent (shared benchmark data not checked out)")


def test_bioasq_and_medmcqa_explanations_ingest_and_guard(knowledge: KnowledgeBase) -> None:
    warnings: list[str] = []
    bioasq = list(read_documents(RAW / "bioasq", warnings.append))
    assert len(bioasq) > 2500 and all(d.extra["corpus"] == "bioasq" for d in bioasq)
    medmcqa = list(read_documents(RAW / "medmcqa_dev.jsonl", warnings.append))
    rows = [json.loads(line) for line in (RAW / "medmcqa_dev.jsonl").open()]
    explained = [row for row in rows if (row.get("exp") or "").strip()]
    assert len(medmcqa) == len(explained) > 2000
    assert len(warnings) == len(rows) - len(explained)  # rows without an explanation are reported, then skipped

    report = knowledge.add(bioasq[:1000] + medmcqa[:500])  # real corpora, a size the 2-core CI embeds in ~1 min
    assert report.chunks >= report.documents and knowledge.count() == report.new
    assert knowledge.add(bioasq[:200]).new == 0

    row = explained[0]
    own = [e for e in knowledge.search(row["question"], k=20, threshold=-1) if e.item_id == row["id"]]
    assert own, "the item's own explanation should be retrievable without the guard"
    guarded = knowledge.search(row["question"], k=20, threshold=-1, guard=SearchGuard(item_ids={row["id"]}))
    assert guarded and all(e.item_id != row["id"] for e in guarded)
