"""Clinical tokenisation, the BM25 index and reciprocal rank fusion."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from medcouncil.tools.lexical import (
    TOKENIZER_VERSION,
    LexicalIndex,
    _sort_postings,
    fingerprint,
    lexical_text,
    tokenize,
)
from medcouncil.tools.retrieval import fuse, relevance


def test_english_tokens_fold_case_hyphens_units_and_plurals() -> None:
    tokens = tokenize("ST-Elevation in II, III and aVF; Aspirin 300 mg, SpO2 below 90%, 7.5 mmol/L; arteries, arms")
    assert {"stelevation", "st", "elevation", "ii", "iii", "avf", "aspirin"} <= set(tokens)
    assert {"300", "mg", "300mg", "spo2", "90%", "7.5", "7.5mmoll"} <= set(tokens)
    assert {"artery", "arm"} <= set(tokens) and "arteries" not in tokens
    assert not {"in", "and", "below"} & set(tokens)  # stop words
    assert tokenize("st elevation") == ["st", "elevation"]  # meets the hyphenated form on its parts
    assert set(tokenize("ST-elevation")) >= set(tokenize("ST elevation"))
    assert tokenize("pancreatitis abscess") == ["pancreatitis", "abscess"]  # -is and -ss are not plurals


def test_greek_letters_thousands_and_micrograms_meet_their_spelled_forms() -> None:
    assert set(tokenize("TNF-α and β-blockers")) >= {"tnfalpha", "tnf", "alpha", "beta", "blocker"}
    assert set(tokenize("beta blocker")) <= set(tokenize("β-blocker"))
    assert "1000mg" in tokenize("1,000 mg") and "1000" in tokenize("1,000 mg")
    assert "250mcg" in tokenize("250 µg") and "250mcg" in tokenize("250 mcg")  # the micro sign, casefolded
    assert tokenize("1,2-diol") == ["1", "2", "diol"]  # not a thousands separator


def test_korean_tokens_are_bigrams_that_ignore_particles() -> None:
    assert tokenize("심근경색") == ["심근", "근경", "경색"]
    assert "흉통" in tokenize("흉통이") and "흉통" in tokenize("흉통을 호소한다")
    assert tokenize("피") == ["피"]  # a one-syllable word is its own token
    mixed = tokenize("ST분절 상승, 트로포닌 상승")
    assert {"st", "분절", "상승", "트로", "로포", "포닌"} <= set(mixed)


def test_bm25_ranks_and_coverage() -> None:
    texts = ["gout urate crystals colchicine", "asthma wheeze salbutamol", "gout diet and alcohol"]
    index = LexicalIndex(["a", "b", "c"], ["", "q-1", ""], [tokenize(t) for t in texts])
    hits = index.search(tokenize("urate crystals in gout"), depth=10)
    assert [index.ids[hit.index] for hit in hits] == ["a", "c"]  # zero-score documents are left out
    assert index.search(tokenize("the and of"), depth=10) == []  # nothing but stop words
    assert index.search(tokenize("croup"), depth=10) == []  # a word no document has
    query = tokenize("gout crystals")
    first, third = index.coverages(query, [0, 2])
    assert first == 1.0
    assert 0 < third < 0.5  # "gout" is the commoner of the two
    assert index.coverages(tokenize("croup stridor"), [0]) == [0.0]
    assert index.coverages([], [0]) == [0.0]


def test_coverage_read_from_the_index_matches_the_token_sets(tmp_path: Path) -> None:
    rng = random.Random(7)
    vocabulary = [f"term{n}" for n in range(40)]
    documents = [rng.sample(vocabulary, rng.randint(1, 12)) for _ in range(300)]
    index = LexicalIndex([str(n) for n in range(300)], [""] * 300, documents)
    index.save(tmp_path / "lex", "x")
    loaded = LexicalIndex.load(tmp_path / "lex", "x")
    assert loaded is not None
    assert loaded.item_chunks == index.item_chunks == {"": 300}
    for _ in range(20):
        query = [*rng.sample(vocabulary, 4), "absent"]
        positions = rng.sample(range(300), 25)
        total = sum(index.idf(token) for token in set(query))
        expected = [sum(index.idf(t) for t in set(query) if t in documents[p]) / total for p in positions]
        assert index.coverages(query, positions) == pytest.approx(expected)
        assert loaded.coverages(query, positions) == pytest.approx(expected)


def test_postings_out_of_order_are_sorted_with_their_scores() -> None:
    scores = {
        "indptr": np.array([0, 3, 5]),
        "indices": np.array([2, 0, 1, 4, 3], dtype=np.int32),
        "data": np.array([0.2, 0.0, 0.1, 0.4, 0.3]),
    }
    _sort_postings(scores)
    assert scores["indices"].tolist() == [0, 1, 2, 3, 4] and scores["data"].tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_a_saved_index_is_used_only_for_the_same_chunks(tmp_path: Path) -> None:
    index = LexicalIndex(["a", "b"], ["", ""], [tokenize("gout"), tokenize("asthma")])
    index.save(tmp_path / "lex", fingerprint(["a", "b"]))
    loaded = LexicalIndex.load(tmp_path / "lex", fingerprint(["b", "a"]))  # order does not matter
    assert loaded is not None and [loaded.ids[h.index] for h in loaded.search(["asthma"], 5)] == ["b"]
    assert LexicalIndex.load(tmp_path / "lex", fingerprint(["a", "b", "c"])) is None  # stale
    (tmp_path / "lex" / "documents.json").write_text("{not json")
    assert LexicalIndex.load(tmp_path / "lex", fingerprint(["a", "b"])) is None  # unreadable: rebuilt by the caller
    assert LexicalIndex.load(tmp_path / "missing", "x") is None
    assert fingerprint(["a"]).startswith(f"{TOKENIZER_VERSION}:")  # another tokeniser's saved index is rebuilt


def test_lexical_text_carries_title_and_korean_terms() -> None:
    text = lexical_text(
        "Crushing chest pain.", {"title": "ACS (급성 관상동맥 증후군)", "korean_terms": "흉통 (chest pain)"}
    )
    assert "흉통" in text and "ACS" in text and "Crushing" in text


def test_reciprocal_rank_fusion_order() -> None:
    dense = ["a", "b", "c", "d"]
    lexical = ["c", "e", "a"]
    fused = fuse(dense, lexical, "hybrid", k=60)
    assert [c.id for c in fused] == ["a", "c", "b", "e", "d"]  # in both lists first; then by the best single rank
    first = fused[0]
    assert first.fused == 1 / 61 + 1 / 63 and (first.dense_rank, first.lexical_rank) == (1, 3)
    assert fused[3].dense_rank is None and fused[3].lexical_rank == 2
    assert [c.id for c in fuse(dense, lexical, "dense")] == dense
    assert [c.id for c in fuse(dense, lexical, "lexical")] == lexical
    # A query the embedder cannot read: the hybrid ranking is the lexical one, its dense ranks still shown.
    unread = fuse(dense, lexical, "hybrid", readable=False)
    assert [c.id for c in unread] == lexical and unread[0].dense_rank == 3 and not unread[0].readable
    # Ties (ranks 1 and 2 against 2 and 1) keep the order of first appearance; the store orders them by relevance.
    assert [c.id for c in fuse(["x", "y"], ["y", "x"], "hybrid")] == ["x", "y"]


def test_relevance_rises_with_either_measure() -> None:
    assert relevance(0.2, 0.1) < relevance(0.5, 0.1) and relevance(0.2, 0.1) < relevance(0.2, 0.6)
    assert relevance(0.05, 0.0) < 0.5 < relevance(0.6, 0.6)
