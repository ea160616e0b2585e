"""Knowledge-base benchmark: ingest throughput against raw encoding, and query latency at ~7k and 50k chunks.

Run ``python -m tests.benchmarks.bench_knowledge [--raw ../shared/data/raw]``. It ingests the MedMCQA explanations
and the BioASQ snippets into a fresh store in a temporary folder and prints:

* ingest chunks/s (reading, chunking, hashing, embedding, upserting) against the raw ``encode`` throughput of the same
  embedding model on the same chunk texts (ratio; goal >= 0.8);
* search latency p50/p95: end to end (embedding the query, then the store) and the store lookup alone, at that size
  and after padding the collection to 50k chunks with random unit vectors (goal p50 <= 15 ms).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from medcouncil.serving.common.console import console
from medcouncil.tools.chunking import chunk_document
from medcouncil.tools.corpora import read_documents
from medcouncil.tools.embeddings import BertEmbedder
from medcouncil.tools.knowledge import KnowledgeBase, KnowledgeConfig


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _latencies(knowledge: KnowledgeBase, queries: list[str], vectors: np.ndarray[Any, Any]) -> dict[str, float]:
    end_to_end, store_only = [], []
    for query, vector in zip(queries, vectors, strict=True):
        t0 = time.perf_counter()
        knowledge.search(query)
        end_to_end.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        knowledge.collection.query(query_embeddings=vector[None, :], n_results=5)
        store_only.append((time.perf_counter() - t0) * 1000)
    e2e, store = _percentiles(end_to_end), _percentiles(store_only)
    return {"search_p50_ms": e2e[0], "search_p95_ms": e2e[1], "store_p50_ms": store[0], "store_p95_ms": store[1]}


def main(
    raw: Annotated[Path, typer.Option(help="The shared raw corpora folder.")] = Path("../shared/data/raw"),
    queries: Annotated[int, typer.Option(help="Queries per latency measurement.")] = 200,
    pad_to: Annotated[int, typer.Option(help="Chunks for the second latency measurement.")] = 50_000,
) -> None:
    """Run the knowledge-base benchmark and print its table."""
    warnings: list[str] = []
    documents = list(read_documents(raw / "medmcqa_dev.jsonl", warnings.append))
    documents += list(read_documents(raw / "bioasq", warnings.append))
    texts = [chunk.text for document in documents for chunk in chunk_document(document)]
    embedder = BertEmbedder()
    embedder.encode(texts[:64])  # warm-up
    console.print(f"[notice]{len(documents)} documents → {len(texts)} chunks; raw encode…[/]")
    t0 = time.perf_counter()
    embedder.encode(texts)
    raw_rate = len(texts) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as folder:
        knowledge = KnowledgeBase(KnowledgeConfig(path=Path(folder), collection="bench"), embedder)
        console.print("[notice]ingest…[/]")
        t0 = time.perf_counter()
        report = knowledge.add(documents)
        ingest_rate = report.new / (time.perf_counter() - t0)
        questions = [d.text[:200] for d in documents[:: max(1, len(documents) // queries)]][:queries]
        vectors = embedder.encode(questions)
        small = _latencies(knowledge, questions, vectors)
        size = knowledge.count()
        console.print(f"[notice]padding to {pad_to} chunks with random unit vectors…[/]")
        rng = np.random.default_rng(0)
        for start in range(size, pad_to, 5000):
            count = min(5000, pad_to - start)
            pad = rng.normal(size=(count, vectors.shape[1])).astype(np.float32)
            pad /= np.linalg.norm(pad, axis=1, keepdims=True)
            ids = [f"pad-{start + i}" for i in range(count)]
            metadatas: Any = [{"source": "synthetic", "item_id": ""}] * count
            knowledge.collection.add(ids=ids, embeddings=pad, documents=["synthetic"] * count, metadatas=metadatas)
        large = _latencies(knowledge, questions, vectors)
        large_size = knowledge.count()

    table = Table(title="medcouncil knowledge-base benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("raw encode (chunks/s)", f"{raw_rate:.1f}")
    table.add_row(f"ingest {report.new} chunks (chunks/s)", f"{ingest_rate:.1f}")
    table.add_row("ingest / raw encode", f"{ingest_rate / raw_rate:.2f}")
    for label, figures in ((f"{size} chunks", small), (f"{large_size} chunks", large)):
        table.add_row(
            f"search p50 / p95 at {label} (ms)", f"{figures['search_p50_ms']:.1f} / {figures['search_p95_ms']:.1f}"
        )
        table.add_row(
            f"store lookup p50 / p95 at {label} (ms)", f"{figures['store_p50_ms']:.1f} / {figures['store_p95_ms']:.1f}"
        )
    console.print(table)
    console.print(f"[usage]{len(warnings)} rows skipped while reading (no text); {queries} queries per latency row[/]")


if __name__ == "__main__":
    typer.run(main)
