"""Knowledge-base benchmark: ingest throughput against raw encoding, and query latency at ~7k and 50k chunks.

Run ``python -m tests.benchmarks.bench_knowledge [--raw ../shared/data/raw]``. It ingests the MedMCQA explanations
and the BioASQ snippets into a fresh store in a temporary folder and prints:

* ingest chunks/s (reading, chunking, hashing, embedding, upserting) against the raw ``encode`` throughput of the same
  embedding model on the same chunk texts (ratio; goal >= 0.8);
* search latency p50/p95/p99, end to end (embedding the query, both rankings, fusion, the decision), for the hybrid
  (default) and the dense method, and the store lookup alone, at that size and after padding the collection to 50k
  chunks (random unit vectors; texts of words drawn from the real chunks, so BM25 sees a real vocabulary), goal
  hybrid p50 <= 15 ms and p99 <= 40 ms on 2 cores;
* the lexical index's build time at 50k chunks (a store opened for the first time, or changed by another process).
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


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def _latencies(path: Path, embedder: BertEmbedder, queries: list[str]) -> dict[str, tuple[float, float, float]]:
    """Per-method latencies, the methods' trials interleaved query by query."""
    bases = {
        method: KnowledgeBase(KnowledgeConfig(path=path, collection="bench", method=method), embedder)
        for method in ("hybrid", "dense")
    }
    t0 = time.perf_counter()
    bases["hybrid"].lexical()
    build = time.perf_counter() - t0
    vectors = embedder.encode(queries)
    samples: dict[str, list[float]] = {"hybrid": [], "dense": [], "store": []}
    for query, vector in zip(queries, vectors, strict=True):
        for method, knowledge in bases.items():
            t0 = time.perf_counter()
            knowledge.search(query)
            samples[method].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        bases["dense"].collection.query(query_embeddings=vector[None, :], n_results=5)
        samples["store"].append((time.perf_counter() - t0) * 1000)
    figures = {name: _percentiles(values) for name, values in samples.items()}
    figures["lexical build (s)"] = (build, build, build)
    return figures


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
        small = _latencies(Path(folder), embedder, questions)
        size = knowledge.count()
        console.print(f"[notice]padding to {pad_to} chunks…[/]")
        rng = np.random.default_rng(0)
        words = np.asarray(" ".join(texts).split())
        for start in range(size, pad_to, 5000):
            count = min(5000, pad_to - start)
            pad = rng.normal(size=(count, small_dimension(embedder))).astype(np.float32)
            pad /= np.linalg.norm(pad, axis=1, keepdims=True)
            ids = [f"pad-{start + i}" for i in range(count)]
            drawn = words[rng.integers(0, len(words), size=(count, 80))]
            pad_texts = [" ".join(row) for row in drawn]
            metadatas: Any = [{"source": "synthetic", "item_id": ""}] * count
            knowledge.collection.add(ids=ids, embeddings=pad, documents=pad_texts, metadatas=metadatas)
        # New bases on the padded store: their lexical index is rebuilt (the fingerprint changed).
        large = _latencies(Path(folder), embedder, questions)
        large_size = knowledge.count()

    table = Table(title="medcouncil knowledge-base benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("raw encode (chunks/s)", f"{raw_rate:.1f}")
    table.add_row(f"ingest {report.new} chunks (chunks/s)", f"{ingest_rate:.1f}")
    table.add_row("ingest / raw encode", f"{ingest_rate / raw_rate:.2f}")
    for label, figures in ((f"{size} chunks", small), (f"{large_size} chunks", large)):
        for name in ("hybrid", "dense", "store"):
            p50, p95, p99 = figures[name]
            what = "store lookup" if name == "store" else f"{name} search"
            table.add_row(f"{what} p50 / p95 / p99 at {label} (ms)", f"{p50:.1f} / {p95:.1f} / {p99:.1f}")
        table.add_row(f"lexical index build at {label} (s)", f"{figures['lexical build (s)'][0]:.1f}")
    hybrid = large["hybrid"]
    verdict = "met" if hybrid[0] <= 15 and hybrid[2] <= 40 else "NOT met"
    table.add_row(f"goal hybrid p50 <= 15 ms, p99 <= 40 ms at {large_size}", verdict)
    console.print(table)
    console.print(f"[usage]{len(warnings)} rows skipped while reading (no text); {queries} queries per latency row[/]")


def small_dimension(embedder: BertEmbedder) -> int:
    return int(embedder.encode(["x"]).shape[1])


if __name__ == "__main__":
    typer.run(main)
