from __future__ import annotations

import itertools

from medcouncil.tools.chunking import Document, chunk_document, chunk_id, chunk_text, split_sentences
from medcouncil.tools.language import detect_language


def test_sentences_split_at_boundaries_and_paragraphs() -> None:
    text = "Asthma is common. Is it reversible? Yes!\n\nTreatment:\n- salbutamol 100 mcg\n- budesonide"
    assert split_sentences(text) == [
        "Asthma is common.",
        "Is it reversible?",
        "Yes!",
        "Treatment:",
        "- salbutamol 100 mcg",
        "- budesonide",
    ]
    assert split_sentences("Give 0.5 mg IM. Repeat in 5 min.") == ["Give 0.5 mg IM.", "Repeat in 5 min."]


def test_chunks_respect_size_and_overlap_one_sentence() -> None:
    sentences = [f"Sentence number {i} talks about a finding." for i in range(20)]
    chunks = chunk_text(" ".join(sentences), max_chars=200)
    assert len(chunks) > 3
    assert all(len(chunk) <= 200 for chunk in chunks)
    for previous, following in itertools.pairwise(chunks):
        assert following.startswith(previous.split(". ")[-1])  # the last sentence opens the next chunk
    assert all(sentence in " ".join(chunks) for sentence in sentences)


def test_overlong_sentence_is_cut_at_words() -> None:
    chunks = chunk_text("word " * 500, max_chars=100)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert sum(chunk.count("word") for chunk in chunks) >= 500


def test_ids_are_stable_content_hashes() -> None:
    document = Document(text="Gout affects the first MTP joint. Colchicine helps.", source="notes.txt")
    first, second = chunk_document(document), chunk_document(document)
    assert [c.id for c in first] == [c.id for c in second]
    assert first[0].id == chunk_id("notes.txt", first[0].text)
    assert chunk_id("other.txt", first[0].text) != first[0].id
    assert first[0].metadata["language"] == "en" and first[0].metadata["chunk"] == 0


def test_language_detection_is_script_based() -> None:
    assert detect_language("환자는 천명과 야간 기침을 호소합니다.") == "ko"
    assert detect_language("환자는 FEV1 62%, salbutamol 후 호전되었습니다.") == "ko"
    assert detect_language("Wheeze and nocturnal cough (천식?)") == "en"
    assert detect_language("12.5 mg") == "en"
