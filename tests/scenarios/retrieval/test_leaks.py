"""The leak check of ``index add``: which benchmark items a corpus would leak, recorded once."""

from __future__ import annotations

import json
from pathlib import Path

from medcouncil.scenarios.retrieval.leaks import describe, find_leaks, record_leaks, recorded_labels
from medcouncil.scenarios.training.decontamination import EvalItem
from medcouncil.tools.chunking import Document

EVALS = [
    EvalItem(source="medmcqa", id="m-1", question="Which vitamin deficiency causes scurvy?"),
    EvalItem(source="pubmedqa", id="123", question="Does aspirin prevent stroke?"),
]


def test_leaks_by_own_id_and_by_question() -> None:
    documents = [
        Document(text="Vitamin C.", source="dev.jsonl", item_id="m-1", extra={"corpus": "medmcqa"}),
        Document(text="Abstract.", source="pq.json", item_id="123", extra={"corpus": "pubmedqa"}),
        Document(text="Copied.", source="mine.jsonl", item_id="x9", question="Which  vitamin deficiency causes SCURVY"),
        Document(text="Unrelated.", source="notes.md", item_id="123"),  # an id alone, from another corpus: no leak
    ]
    labelled, leaks = find_leaks(documents, EVALS)
    assert [(leak.eval_source, leak.eval_id, leak.kind) for leak in leaks] == [
        ("medmcqa", "m-1", "id"),
        ("pubmedqa", "123", "id"),
        ("medmcqa", "m-1", "question"),
    ]
    assert [document.item_id for document in labelled] == ["m-1", "123", "m-1", "123"]  # the guard's key
    assert describe(leaks) == "medmcqa 2, pubmedqa 1"
    assert find_leaks(documents, []) == (documents, [])


def test_the_record_keeps_each_leak_once(tmp_path: Path) -> None:
    _, leaks = find_leaks([Document(text="t", source="dev", item_id="m-1", extra={"corpus": "medmcqa"})], EVALS)
    path = record_leaks(tmp_path, "kb", leaks)
    record_leaks(tmp_path, "kb", leaks + leaks)
    assert path == tmp_path / "leaks" / "kb.jsonl"
    assert [json.loads(line)["eval_id"] for line in path.read_text().splitlines()] == ["m-1"]


def test_recorded_labels_keep_guarding_without_a_check(tmp_path: Path) -> None:
    question = "Which vitamin deficiency causes scurvy?"
    copied = Document(text="Copied.", source="mine.jsonl", item_id="x9", question=question)
    _, leaks = find_leaks([copied], EVALS)
    record_leaks(tmp_path, "kb", leaks)
    other = Document(text="Other.", source="mine.jsonl", item_id="x10")
    labelled, count = recorded_labels(tmp_path, "kb", [copied, other])
    assert [d.item_id for d in labelled] == ["m-1", "x10"] and count == 1
    (tmp_path / "leaks" / "kb.jsonl").write_text("{broken\n")
    assert recorded_labels(tmp_path, "kb", [copied])[0] == [copied]  # an unreadable record changes nothing
    assert recorded_labels(tmp_path, "none", [copied]) == ([copied], 0)
