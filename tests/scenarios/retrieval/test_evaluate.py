"""Retrieval metrics, the decision's calibration and the labelled sets' error paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medcouncil.scenarios.retrieval.evaluate import (
    QueryCandidates,
    bootstrap,
    calibrate,
    collapse,
    decision_score,
    score_ranking,
)
from medcouncil.scenarios.retrieval.sets import load_set, read_queries, starter_set
from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.chunking import Document, chunk_document
from medcouncil.tools.retrieval import Candidate, relevance
from medcouncil.tools.starter_pack import STARTER_DIR


def test_ranking_metrics() -> None:
    relevant = frozenset({"x", "y"})
    first, recall, ndcg = score_ranking(relevant, [{"a"}, {"x", "x.md"}, {"b"}, {"c"}, {"d"}, {"y"}])
    assert first == 2
    assert recall == {"recall@1": 0.0, "recall@5": 0.5, "recall@10": 1.0}
    ideal = 1 + 1 / math.log2(3)
    assert ndcg == pytest.approx((1 / math.log2(3) + 1 / math.log2(7)) / ideal)
    assert score_ranking(frozenset({"z"}), [{"a"}]) == (None, {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0}, 0)
    perfect = score_ranking(frozenset({"a"}), [{"a"}, {"a"}])  # a key found twice counts once
    assert perfect == (1, {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0}, 1.0)


def test_documents_are_counted_once_with_the_keys_of_all_their_chunks() -> None:
    long_note = Document(text=" ".join(f"Sentence {n} about gout and urate." for n in range(60)), source="notes.jsonl")
    rows = [
        Document(text="Asthma: wheeze.", source="notes.jsonl"),
        Document(text="Croup: stridor.", source="notes.jsonl"),
    ]
    chunks = chunk_document(long_note) + [chunk for row in rows for chunk in chunk_document(row)]
    assert len(chunks) > 3
    ranked = [
        Candidate(chunk.id, metadata=dict(chunk.metadata)) for chunk in (chunks[1], chunks[-1], chunks[0], chunks[-2])
    ]
    documents = collapse(ranked)
    assert [candidate.id for candidate, _ in documents] == [chunks[1].id, chunks[-1].id, chunks[-2].id]
    assert {chunks[0].id, chunks[1].id, "notes.jsonl"} <= documents[0][1]  # a label naming either chunk finds it
    assert chunks[0].id not in documents[1][1]  # rows of one file without ids stay distinct documents


def test_bootstrap_interval_brackets_the_mean() -> None:
    mean, low, high = bootstrap([1.0] * 30 + [0.0] * 70)
    assert mean == pytest.approx(0.3) and 0.2 < low < 0.3 < high < 0.4
    assert bootstrap([]) == (0.0, 0.0, 0.0)


def test_calibration_finds_the_line_between_relevant_and_off_topic() -> None:
    groups = [
        QueryCandidates("s", True, False, ((0.5, 0.6, True), (0.3, 0.1, False))),
        QueryCandidates("s", True, False, ((0.45, 0.5, True), (0.35, 0.2, False))),
        QueryCandidates("s", True, True, ((0.15, 0.05, False),)),
        QueryCandidates("s", True, True, ((0.25, 0.1, False),)),
    ]
    weights, score = calibrate(groups, readable=True)
    assert score == 1.0 and decision_score(groups, weights) == 1.0
    assert relevance(0.5, 0.6, weights) >= 0.5 > relevance(0.25, 0.1, weights)
    too_strict = (-100.0, 1.0, 1.0)
    assert decision_score(groups, too_strict) == 0.5  # silent everywhere: half right


def test_labelled_query_files_fail_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"id": "1", "text": "chest pain", "relevant": ["acs.md"]}\n{"id": "2", "text": ""}\n')
    with pytest.raises(ConfigError, match=rf"{path}:2: a labelled query needs a non-empty 'text'"):
        read_queries(path)
    path.write_text('{"id": "1", "text": "a", "relevant": "acs.md"}\n')
    with pytest.raises(ConfigError, match=rf"{path}:1: 'relevant' must be a list"):
        read_queries(path)
    path.write_text('{"id": "1", "text": "a"}\n{"id": "1", "text": "b"}\n')
    with pytest.raises(ConfigError, match="query id '1' repeats"):
        read_queries(path)
    path.write_text("{broken\n")
    with pytest.raises(ConfigError, match=rf"{path}:1"):
        read_queries(path)
    with pytest.raises(ConfigError, match="not a built-in set"):
        load_set(str(tmp_path / "missing.jsonl"))


def test_the_starter_set_covers_every_note_in_both_languages() -> None:
    labelled = starter_set()
    notes = {path.name for path in STARTER_DIR.glob("*.md")}
    for language in ("en", "ko"):
        counts = {note: 0 for note in notes}
        for query in labelled.queries:
            if query.language == language:
                for note in query.relevant:
                    counts[note] += 1
        assert min(counts.values()) >= 2, (language, counts)
    assert sum(not query.relevant for query in labelled.queries) >= 20  # off-topic queries for the no-evidence path
    assert all(json.dumps(q.text) for q in labelled.queries)


def test_missing_shared_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no raw data folder"):
        load_set("bioasq", tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a BioASQ golden file"),
        ('{"questions": null}', "no 'questions' list"),
        ('{"questions": [{"body": "Is it?", "snippets": []}]}', "question 1: no 'id'"),
        ('{"questions": [{"id": "q7", "body": 3}]}', r"question 1 \(q7\): 'body' must be text"),
        ('{"questions": [{"id": "q7", "body": "Is it?", "snippets": [{"text": 5}]}]}', "a snippet without a 'text'"),
        ('{"questions": [{"id": "q7", "body": "Is it?", "snippets": []}]}', "no BioASQ question with a body and gold"),
    ],
)
def test_a_malformed_bioasq_file_is_a_one_line_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    folder = tmp_path / "raw" / "bioasq"
    folder.mkdir(parents=True)
    (folder / "11B1_golden.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_set("bioasq", tmp_path)
    assert "11B1_golden.json" in str(raised.value) or "bioasq" in str(raised.value)
    assert "\n" not in str(raised.value)
