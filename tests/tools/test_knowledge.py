"""The knowledge base on a real Chroma store in a temporary folder, with the real offline embedding model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from medcouncil.tools import starter_pack
from medcouncil.tools.chunking import Document
from medcouncil.tools.embeddings import BertEmbedder
from medcouncil.tools.knowledge import (
    DEFAULT_COLLECTION,
    KnowledgeBase,
    KnowledgeConfig,
    KnowledgeStoreError,
    SearchGuard,
)
from medcouncil.tools.search import InMemoryKnowledge
from medcouncil.tools.starter_pack import STARTER_NOTE, open_knowledge, starter_documents

NOTES = [
    Document(
        text="Gout is caused by urate crystals; the first MTP joint is classic. Colchicine treats attacks.",
        source="gout.txt",
        title="Gout",
    ),
    Document(
        text="Asthma causes episodic wheeze and nocturnal cough that improve with salbutamol.",
        source="asthma.txt",
        title="Asthma",
    ),
    Document(
        text="Scurvy results from vitamin C deficiency, with bleeding gums and poor wound healing.",
        source="medmcqa.jsonl",
        title="Nutrition",
        item_id="q-42",
    ),
]


def test_cosine_distance_is_what_chroma_uses(knowledge: KnowledgeBase, embedder: BertEmbedder) -> None:
    assert knowledge.space == "cosine"
    knowledge.add(NOTES)
    query = "wheeze at night relieved by salbutamol"
    top = knowledge.search(query, k=1, threshold=-1)[0]
    expected = float(embedder.encode([query])[0] @ embedder.encode([top.text])[0])
    assert top.cosine == pytest.approx(expected, abs=1e-4)
    assert top.source == "asthma.txt" and top.dense_rank == 1
    (dense,) = _dense(knowledge).search(query, k=1, threshold=-1)
    assert dense.score == pytest.approx(expected, abs=1e-4)  # the dense method decides on the cosine


def test_reingesting_is_idempotent(knowledge: KnowledgeBase) -> None:
    first = knowledge.add(NOTES)
    assert first.documents == 3 and first.new == first.chunks > 0
    count = knowledge.count()
    second = knowledge.add(NOTES)
    assert second.new == 0 and knowledge.count() == count


def _dense(knowledge: KnowledgeBase) -> KnowledgeBase:
    """The same store searched by the dense method (the reference setup's cosine threshold)."""
    return KnowledgeBase(knowledge.config.model_copy(update={"method": "dense"}), knowledge.embedder)


def test_threshold_and_k(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    knowledge = _dense(knowledge)
    everything = knowledge.search("joint pain and crystals", k=10, threshold=-1)
    assert len(everything) == knowledge.count()
    assert [e.score for e in everything] == sorted((e.score for e in everything), reverse=True)
    assert len(knowledge.search("joint pain and crystals", k=2, threshold=-1)) == 2
    relevant = knowledge.search("urate crystals in the first MTP joint", threshold=0.4)
    assert relevant and all(e.score >= 0.4 for e in relevant) and relevant[0].source == "gout.txt"
    assert knowledge.search("urate crystals in the first MTP joint", threshold=0.99) == []


def test_k_is_taken_as_given_and_below_one_is_refused(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    assert len(knowledge.search("joint pain and crystals", k=1, threshold=-1)) == 1
    assert len(knowledge.search("joint pain and crystals", threshold=-1)) == min(knowledge.config.k, knowledge.count())
    memory = InMemoryKnowledge(NOTES, k=5, threshold=0)
    for search in (knowledge.search, memory.search):
        for k in (0, -1):  # 0 was taken as "the default" (5 results), -1 reached Chroma as a TypeError
            with pytest.raises(ValueError, match=f"k = {k}: a search returns at least 1 result"):
                search("joint pain and crystals", k=k)
    assert len(memory.search("crystals joint wheeze vitamin", k=1)) == 1


def test_guard_excludes_the_items_own_material(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    question = "Which vitamin deficiency causes bleeding gums and poor wound healing?"
    unguarded = knowledge.search(question, threshold=0.3)
    assert unguarded[0].item_id == "q-42"
    by_id = knowledge.search(question, threshold=0.3, guard=SearchGuard(item_ids={"q-42"}))
    assert all(e.item_id != "q-42" for e in by_id)

    copy = Document(text=question + " Answer: vitamin C.", source="leaked.txt")
    knowledge.add([copy])
    assert any(e.source == "leaked.txt" for e in knowledge.search(question, threshold=0.3))
    guarded = knowledge.search("bleeding gums", threshold=-1, k=10, guard=SearchGuard(question=question))
    assert all(e.source != "leaked.txt" for e in guarded)  # near-duplicate of the question text
    assert any(e.source == "gout.txt" for e in guarded)


def test_korean_metadata_round_trip(knowledge: KnowledgeBase) -> None:
    knowledge.add(
        [
            Document(
                text="천식 환자는 야간 기침과 천명을 호소한다. 살부타몰로 호전된다.",
                source="천식.md",
                title="천식 진료 지침",
            )
        ]
    )
    (evidence,) = knowledge.search("천식 야간 기침", threshold=-1)
    assert evidence.title == "천식 진료 지침" and evidence.source == "천식.md" and evidence.language == "ko"
    assert "살부타몰" in evidence.text
    assert knowledge.stats()["languages"] == {"ko": 1}
    assert knowledge.remove("천식.md") == 1 and knowledge.count() == 0


def test_empty_index_finds_no_evidence(knowledge: KnowledgeBase) -> None:
    assert knowledge.count() == 0
    assert knowledge.search("anything at all") == []


def test_corrupt_store_is_a_clear_error(tmp_path: Path, embedder: BertEmbedder) -> None:
    store = tmp_path / "store"
    KnowledgeBase(KnowledgeConfig(path=store, collection="test-kb"), embedder).add(NOTES[:1])
    (store / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(KnowledgeStoreError, match=rf"knowledge store {store} cannot be opened"):
        KnowledgeBase(KnowledgeConfig(path=store, collection="test-kb"), embedder)


def test_a_store_refuses_vectors_of_another_model(tmp_path: Path, embedder: BertEmbedder) -> None:
    config = KnowledgeConfig(path=tmp_path / "store", collection="test-kb")
    KnowledgeBase(config, embedder)

    class Other:
        name = "other-model"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 384), dtype=np.float32)

    with pytest.raises(KnowledgeStoreError, match="built with embeddings 'all-MiniLM-L6-v2', not 'other-model'"):
        KnowledgeBase(config, Other())


def test_a_readded_document_gets_its_new_metadata_without_being_embedded_again(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    knowledge.lexical()
    relabelled = Document(text=NOTES[0].text, source="gout.txt", title="Gout", item_id="medqa-test-7")
    report = knowledge.add([relabelled])
    assert (report.new, report.updated) == (0, 1)  # a leak label on a chunk already stored
    query = "urate crystals in the first MTP joint"
    assert knowledge.search(query, k=1)[0].source == "gout.txt"
    guard = SearchGuard(item_ids={"medqa-test-7"})
    assert "gout.txt" not in [e.source for e in knowledge.search(query, threshold=-1, guard=guard)]
    assert knowledge.add([relabelled]).updated == 0


def test_replacing_a_source_drops_the_chunks_its_old_text_made(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    edited = Document(text="Gout: hyperuricaemia; treat flares with NSAIDs.", source="gout.txt", title="Gout")
    report = knowledge.add([edited], replace=["gout.txt"])
    assert report.new == 1 and report.removed >= 1
    assert knowledge.stats()["sources"]["gout.txt"] == 1
    assert "colchicine" not in " ".join(c.text.lower() for c in knowledge.rank("colchicine", "lexical"))
    old_text = Document(text=NOTES[1].text, source="asthma.txt", title="Asthma")
    knowledge.add([Document(text="Asthma: inhaled corticosteroids.", source="asthma.txt")])  # no replace: adds
    assert knowledge.stats()["sources"]["asthma.txt"] == 2
    folder = [Document(text=f"Note {n} on croup.", source=f"/notes/{n}.md") for n in range(3)]
    knowledge.add([*folder, old_text], replace=["/notes", "asthma.txt"])
    report = knowledge.add(folder[:1], replace=["/notes/"], keep={"/notes/2.md"})  # 1.md deleted, 2.md read in part
    assert report.removed == 1 and report.kept_sources == {"/notes/2.md"}
    assert {s for s in knowledge.stats()["sources"] if s.startswith("/notes")} == {"/notes/0.md", "/notes/2.md"}
    assert knowledge.stats()["sources"]["asthma.txt"] == 1
    keep = {knowledge.rank("wheeze salbutamol", "lexical")[0].id}
    chunks = knowledge.count()
    assert knowledge.prune(keep) == chunks - 1 and knowledge.collection.get(include=[])["ids"] == sorted(keep)


def test_a_metadata_key_the_document_no_longer_has_is_removed(knowledge: KnowledgeBase) -> None:
    tagged = Document(text=NOTES[0].text, source="gout.txt", title="Gout", extra={"korean_terms": "통풍"})
    knowledge.add([tagged])
    assert knowledge.rank("통풍", "lexical")
    assert knowledge.add([NOTES[0]]).updated == 1
    (meta,) = knowledge.collection.get(include=["metadatas"])["metadatas"] or []
    assert "korean_terms" not in meta and knowledge.rank("통풍", "lexical") == []


def test_an_older_starter_pack_is_brought_up_to_date(
    tmp_path: Path, embedder: BertEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = KnowledgeConfig(path=tmp_path / "store", collection=DEFAULT_COLLECTION)
    knowledge = open_knowledge(config, embedder)
    assert knowledge.remove("starter/asthma.md") > 0
    # As a release before the Korean glossary grew left it: other terms, an older text, no version recorded.
    acs = knowledge.collection.get(where={"source": "starter/acs.md"}, include=["metadatas"])
    knowledge.collection.update(ids=acs["ids"], metadatas=[{"korean_terms": "심근경색"} for _ in acs["ids"]])
    old = Document(text="Acute coronary syndrome: an older note.", source="starter/stroke.md", title="Stroke")
    knowledge.add([old])
    metadata = dict(knowledge.collection.metadata or {})
    metadata.pop("starter_version")
    knowledge.collection.modify(metadata={**metadata, "starter_version": "older"})
    reopened = open_knowledge(config, embedder)
    terms = reopened.collection.get(where={"source": "starter/acs.md"}, include=["metadatas"])["metadatas"] or []
    assert all("트로포닌" in str(meta["korean_terms"]) for meta in terms)
    assert "an older note" not in " ".join(c.text for c in reopened.rank("older note acute coronary", "lexical"))
    assert "starter/asthma.md" not in reopened.stats()["sources"]  # a note the user removed stays removed
    assert reopened.search("트로포닌 상승, 흉통", k=1)[0].source == "starter/acs.md"

    # A release that adds a note and renames another: the new one arrives, the renamed one moves, removals hold.
    documents = starter_documents()
    renamed = [
        dataclasses.replace(d, source="starter/stroke-tia.md") if d.source == "starter/stroke.md" else d
        for d in documents
    ]
    added = Document(text="Croup: barking cough, stridor; dexamethasone.", source="starter/croup.md", title="Croup")
    monkeypatch.setattr(starter_pack, "starter_documents", lambda: [*renamed, added])
    newer = open_knowledge(config, embedder)
    sources = newer.stats()["sources"]
    assert "starter/croup.md" in sources and "starter/stroke-tia.md" in sources
    assert "starter/stroke.md" not in sources and "starter/asthma.md" not in sources


def test_a_store_that_cannot_be_written_still_opens(
    tmp_path: Path, embedder: BertEmbedder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = KnowledgeConfig(path=tmp_path / "store", collection=DEFAULT_COLLECTION)
    open_knowledge(config, embedder)
    monkeypatch.setattr(starter_pack, "starter_version", lambda documents: "a newer release")

    def read_only(self: KnowledgeBase, *args: object, **kwargs: object) -> None:
        raise PermissionError("attempt to write a readonly database")

    monkeypatch.setattr(KnowledgeBase, "add", read_only)
    knowledge = open_knowledge(config, embedder)
    assert knowledge.count() > 0
    assert "the starter pack could not be brought up to date" in capsys.readouterr().err


def test_starter_pack_seeds_the_default_collection_once(tmp_path: Path, embedder: BertEmbedder) -> None:
    documents = starter_documents()
    assert len(documents) >= 30
    assert all("(" in d.title and d.extra["note"] == STARTER_NOTE for d in documents)
    config = KnowledgeConfig(path=tmp_path / "store", collection=DEFAULT_COLLECTION)
    knowledge = open_knowledge(config, embedder)
    assert len(knowledge.stats()["sources"]) == len(documents)
    top = knowledge.search("ST elevation myocardial infarction with raised troponin: primary PCI", k=1)
    assert top and top[0].source == "starter/acs.md" and "심근경색" in top[0].title
    assert knowledge.remove("starter/asthma.md") > 0
    reopened = open_knowledge(config, embedder)
    assert "starter/asthma.md" not in reopened.stats()["sources"]


def test_a_killed_seeding_is_finished_by_the_next_open(tmp_path: Path, embedder: BertEmbedder) -> None:
    config = KnowledgeConfig(path=tmp_path / "store", collection=DEFAULT_COLLECTION)
    killed = KnowledgeBase(config, embedder)  # the collection exists: a kill -9 here left it empty
    killed.add(starter_documents()[:2])  # ... or half seeded
    assert killed.seeding_marker.exists()
    knowledge = open_knowledge(config, embedder)
    assert len(knowledge.stats()["sources"]) == len(starter_documents())
    assert not knowledge.seeding_marker.exists()


STEMI = (
    "A 58-year-old man has crushing substernal chest pain for 40 minutes radiating to the left arm, diaphoresis, "
    "and ST elevation in II, III and aVF. What is the diagnosis and the first treatment?"
)


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory, embedder: BertEmbedder) -> KnowledgeBase:
    """The starter pack in a store of its own (built once for the module)."""
    knowledge = KnowledgeBase(KnowledgeConfig(path=tmp_path_factory.mktemp("starter"), collection="starter"), embedder)
    knowledge.add(starter_documents())
    return knowledge


def test_the_stemi_vignette_finds_the_acs_note_first(starter: KnowledgeBase) -> None:
    evidence = starter.search(STEMI)
    assert evidence[0].source == "starter/acs.md" and evidence[0].lexical_rank == 1
    dense = _dense(starter).search(STEMI, threshold=-1)
    assert dense[0].source != "starter/acs.md"  # the embedder alone puts it lower (the reason for the lexical half)
    assert "starter/acs.md" not in [e.source for e in _dense(starter).search(STEMI)]  # and under the 0.4 line


def test_stroke_signs_reach_the_stroke_note(starter: KnowledgeBase) -> None:
    ranked = starter.rank("sudden right-sided weakness with facial droop and slurred speech")
    assert "starter/stroke.md" in [c.metadata["source"] for c in ranked[:3]]


def test_a_korean_query_reaches_its_note_without_translation(starter: KnowledgeBase) -> None:
    evidence = starter.search("심근경색이 의심되어 트로포닌을 측정하고 아스피린을 투여했다")
    assert evidence and evidence[0].source == "starter/acs.md"
    assert evidence[0].lexical_rank == 1
    ranked = starter.rank("심근경색이 의심되는 환자", "hybrid")
    assert not ranked[0].readable  # the English embedder cannot read it: its ranking is the lexical one
    assert [c.lexical_rank for c in ranked] == sorted(c.lexical_rank or 10**6 for c in ranked)


def test_off_topic_questions_get_no_evidence(starter: KnowledgeBase) -> None:
    for question in ("What is the capital of France?", "How do I reset my router's password?", "오늘 서울 날씨 어때?"):
        assert starter.search(question) == [], question
    assert starter.search("What is the capital of France?", threshold=-1)  # candidates exist: the decision drops them


def test_the_guard_covers_the_lexical_side(knowledge: KnowledgeBase) -> None:
    knowledge.add(NOTES)
    query = "scurvy vitamin C deficiency bleeding gums wound healing"
    assert knowledge.rank(query, "lexical")[0].metadata["item_id"] == "q-42"
    guarded = knowledge.rank(query, "lexical", guard=SearchGuard(item_ids={"q-42"}))
    assert all(c.metadata["item_id"] != "q-42" for c in guarded)
    assert all(e.item_id != "q-42" for e in knowledge.search(query, threshold=-1, guard=SearchGuard(item_ids={"q-42"})))


def test_the_lexical_index_follows_the_collection(knowledge: KnowledgeBase, embedder: BertEmbedder) -> None:
    knowledge.add(NOTES[:2])
    assert knowledge.rank("colchicine", "lexical")[0].metadata["source"] == "gout.txt"
    assert knowledge.lexical_folder.is_dir()  # saved beside the store
    knowledge.add(NOTES[2:])  # an add drops the saved index; the next search sees the new chunk
    assert knowledge.rank("scurvy", "lexical")[0].metadata["source"] == "medmcqa.jsonl"
    knowledge.remove("gout.txt")
    assert knowledge.rank("colchicine", "lexical") == []
    # Another process changes the collection behind this one's back: a new opening notices (fingerprint).
    assert knowledge.rank("salbutamol wheeze", "lexical")  # cached in this instance
    other = KnowledgeBase(knowledge.config, embedder)
    other.collection.delete(where={"source": "asthma.txt"})
    assert KnowledgeBase(knowledge.config, embedder).rank("salbutamol wheeze", "lexical") == []
    assert knowledge.rank("salbutamol wheeze", "lexical") == []  # the long-lived instance notices too, no crash
    other.add(NOTES[:1])
    assert knowledge.rank("colchicine", "lexical")[0].metadata["source"] == "gout.txt"
    assert knowledge.search("colchicine", guard=SearchGuard(item_ids={""})) != []  # an empty id guards nothing
    other.add([Document(text=NOTES[0].text, source="gout.txt", title="Gout", item_id="q-77")])  # relabelled there
    assert knowledge.rank("colchicine", "lexical", guard=SearchGuard(item_ids={"q-77"})) == []  # seen here


def test_a_guarded_item_with_many_chunks_does_not_crowd_out_the_lexical_ranking(knowledge: KnowledgeBase) -> None:
    guarded = Document(
        text=" ".join(f"Gout case {n}: urate crystals in the first MTP joint." for n in range(60)),
        source="exp.jsonl",
        item_id="q-9",
    )
    knowledge.add([guarded, *NOTES])
    assert knowledge.collection.count() > len(NOTES) + 2  # the guarded item spans several chunks
    ranked = knowledge.rank("gout urate crystals", "lexical", depth=1, guard=SearchGuard(item_ids={"q-9"}))
    assert [c.metadata["source"] for c in ranked] == ["gout.txt"]
