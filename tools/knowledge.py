"""The knowledge base: a persistent Chroma collection of embedded chunks and a BM25 index beside it, searched
dense, lexical or hybrid (``retrieval.py``), with a calibrated decision and a contamination guard.

Chroma runs embedded (``PersistentClient``) under the user data folder, telemetry off, with cosine distance set in
the collection's HNSW configuration. medcouncil computes every vector itself (see ``embeddings.py``), so Chroma's
default embedding model, which would be fetched from a hub, is never used. The lexical index is saved under
``<store>/lexical/<collection>`` with a fingerprint of the chunk ids it covers: a store changed by another process or
an older version is re-indexed on first search.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from medcouncil.serving.common.errors import ConfigError, MedcouncilError
from medcouncil.serving.common.paths import data_dir
from medcouncil.tools.chunking import Chunk, Document, chunk_document
from medcouncil.tools.embeddings import Embedder, EmbeddingConfig, build_embedder
from medcouncil.tools.language import detect_language
from medcouncil.tools.lexical import LexicalIndex, LexicalStore, tokenize
from medcouncil.tools.retrieval import (
    DEPTH,
    RRF_K,
    Candidate,
    Method,
    checked_k,
    default_threshold,
    fuse,
    method_from_env,
    near_duplicates,
)

DEFAULT_COLLECTION = "medcouncil"
TOP_K = 5
"""Top-k of the reference Korean MedGemma setup."""
NEAR_DUPLICATE = 0.9
"""Similarity to a benchmark question above which a chunk counts as derived from it."""


class KnowledgeStoreError(MedcouncilError):
    """The store cannot be opened or does not match the embedding model."""


class KnowledgeConfig(BaseModel):
    """Where the knowledge base lives and how it is searched."""

    path: Path | None = None
    """Store folder; default ``<user data>/knowledge`` (env ``MEDCOUNCIL_KNOWLEDGE_DIR``)."""
    collection: str = DEFAULT_COLLECTION
    k: int = Field(default=TOP_K, ge=1)
    method: Method = Field(default_factory=lambda: method_from_env())
    """``hybrid`` (dense and BM25 fused), ``dense`` (the reference setup: cosine only) or ``lexical``; default from
    env ``MEDCOUNCIL_RETRIEVAL`` (how ``chat`` and ``bench`` are switched), else ``hybrid``."""
    rrf_k: int = Field(default=RRF_K, ge=1)
    """Reciprocal rank fusion's constant."""
    threshold: float | None = Field(default=None, ge=-1, le=1)
    """Cutoff on the method's score: cosine for ``dense`` (default 0.4), calibrated relevance otherwise (0.5)."""
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)

    def store_path(self) -> Path:
        if self.path is not None:
            return self.path.expanduser()
        env = os.environ.get("MEDCOUNCIL_KNOWLEDGE_DIR")
        return Path(env).expanduser() if env else data_dir() / "knowledge"


class Evidence(BaseModel):
    """One retrieved chunk."""

    id: str
    text: str
    score: float
    """What the search decided on: calibrated relevance (hybrid, lexical) or cosine similarity (dense)."""
    source: str
    title: str = ""
    item_id: str = ""
    language: str = ""
    cosine: float | None = None
    """Cosine similarity to the query."""
    coverage: float | None = None
    """Idf-weighted share of the query's terms in the chunk."""
    dense_rank: int | None = None
    lexical_rank: int | None = None
    """Ranks (from 1) in the dense and the BM25 ranking; None when outside a ranking's candidates."""


@dataclass
class SearchGuard:
    """Keeps a benchmark item's own material out of its evidence (contamination guard)."""

    item_ids: set[str] = field(default_factory=set)
    question: str | None = None
    near_duplicate: float = NEAR_DUPLICATE


@dataclass
class AddReport:
    documents: int = 0
    chunks: int = 0
    new: int = 0
    updated: int = 0
    """Chunks already stored whose metadata changed (a relabelled item id, a new glossary): updated, not embedded."""
    removed: int = 0
    """Chunks of a replaced source that its documents no longer produce."""
    kept_sources: set[str] = field(default_factory=set)
    """Sources in ``keep`` that still have chunks the documents did not produce (left in place)."""
    written: set[str] = field(default_factory=set, repr=False)
    """Chunk ids written by this add (a text repeated later in the same add does not rewrite its metadata)."""

    def counts(self) -> tuple[int, int, int, int, int]:
        """Documents, chunks, new, updated, removed."""
        return (self.documents, self.chunks, self.new, self.updated, self.removed)


class KnowledgeBase:
    """A Chroma collection plus the embedder that made its vectors."""

    def __init__(self, config: KnowledgeConfig | None = None, embedder: Embedder | None = None) -> None:
        self.config = config or KnowledgeConfig()
        self.embedder = embedder or build_embedder(self.config.embedding)
        self.path = self.config.store_path()
        self._lexical_store = LexicalStore(self.path / "lexical", self.config.collection)
        os.environ["ANONYMIZED_TELEMETRY"] = "False"
        try:
            import chromadb
            from chromadb.config import Settings

            self.path.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(
                path=str(self.path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
            )
            self.created = self.config.collection not in {c.name for c in self._client.list_collections()}
            if self.created and self.config.collection == DEFAULT_COLLECTION:
                # Written before the collection exists and removed once the starter pack is in: a process killed
                # in between leaves the marker, and the next one finishes the seeding (never an empty default).
                self.seeding_marker.touch()
            self.collection = self._client.get_or_create_collection(
                self.config.collection,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedder": self.embedder.name},
                embedding_function=None,
            )
        except MedcouncilError:
            raise
        except Exception as error:  # Chroma raises sqlite, Rust-binding and validation errors alike
            raise KnowledgeStoreError(
                f"knowledge store {self.path} cannot be opened ({type(error).__name__}: {error}); "
                "move it away to start a new one"
            ) from error
        built_with = (self.collection.metadata or {}).get("embedder")
        if built_with != self.embedder.name:
            raise KnowledgeStoreError(
                f"collection {self.config.collection!r} in {self.path} was built with embeddings {built_with!r}, "
                f"not {self.embedder.name!r}: use another --collection"
            )

    @property
    def seeding_marker(self) -> Path:
        return self.path / f"{self.config.collection}.seeding"

    @property
    def space(self) -> str:
        """The distance Chroma actually uses for this collection."""
        configuration: Any = self.collection.configuration
        return str(configuration["hnsw"]["space"])

    def count(self) -> int:
        return int(self.collection.count())

    def add(
        self,
        documents: Iterable[Document],
        batch_size: int = 1024,
        progress: Callable[[int], None] | None = None,
        replace: Sequence[str] = (),
        keep: Collection[str] = (),
    ) -> AddReport:
        """Chunk, embed and upsert; chunks already stored (same id) are not embedded again, their metadata is updated
        when it changed (a text shared by two documents keeps the first one's).

        ``replace``: sources (a file) or folders whose whole content the documents are: stored chunks of a source
        equal to one of them or under one of them that the documents did not produce (an edited file's old text, a
        file deleted from a folder) are removed afterwards, except those of the sources in ``keep`` (a file read only
        in part).
        """
        report = AddReport()
        pending: list[Chunk] = []
        for document in documents:
            report.documents += 1
            for chunk in chunk_document(document):
                pending.append(chunk)
                if len(pending) >= batch_size:
                    self._flush(pending, report, progress)
                    pending = []
        if pending:
            self._flush(pending, report, progress)
        if replace:
            roots = {root.rstrip(os.sep) for root in replace}
            rows = self.collection.get(include=["metadatas"])
            stale: list[str] = []
            for chunk_id, meta in zip(rows["ids"], rows["metadatas"] or [], strict=True):
                source = str((meta or {}).get("source", ""))
                if chunk_id not in report.written and _under(source, roots):
                    if source in keep:
                        report.kept_sources.add(source)
                    else:
                        stale.append(chunk_id)
            if stale:
                self._delete(stale)
                report.removed += len(stale)
        return report

    def _flush(self, chunks: list[Chunk], report: AddReport, progress: Callable[[int], None] | None) -> None:
        first: dict[str, Chunk] = {}
        for chunk in chunks:
            if chunk.id not in report.written:
                first.setdefault(chunk.id, chunk)
        unique = list(first.values())
        stored = self.collection.get(ids=[chunk.id for chunk in unique], include=["metadatas"])
        existing = {i: dict(meta or {}) for i, meta in zip(stored["ids"], stored["metadatas"] or [], strict=True)}
        fresh = [chunk for chunk in unique if chunk.id not in existing]
        changed = [chunk for chunk in unique if chunk.id in existing and existing[chunk.id] != chunk.metadata]
        if fresh or changed:
            self._changed()  # the lexical text includes metadata (title, Korean terms): an update changes it too
        if fresh:
            vectors = self.embedder.encode([chunk.text for chunk in fresh])
            self.collection.upsert(
                ids=[chunk.id for chunk in fresh],
                embeddings=vectors,
                documents=[chunk.text for chunk in fresh],
                metadatas=[chunk.metadata for chunk in fresh],  # type: ignore[misc]
            )
        if changed:
            # Chroma merges metadata on update: a key the chunk no longer has is sent as None, which deletes it.
            metadatas: Any = [{**dict.fromkeys(existing[chunk.id]), **chunk.metadata} for chunk in changed]
            self.collection.update(ids=[chunk.id for chunk in changed], metadatas=metadatas)
        if fresh or changed:
            self._changed()
        report.written.update(first)
        report.chunks += len(chunks)
        report.new += len(fresh)
        report.updated += len(changed)
        if progress is not None:
            progress(len(chunks))

    def _delete(self, ids: list[str]) -> None:
        self._changed()
        for start in range(0, len(ids), 5000):
            self.collection.delete(ids=ids[start : start + 5000])
        self._changed()

    # The lexical side: see LexicalStore (saved beside the store, rebuilt when any process changed the collection).

    @property
    def lexical_folder(self) -> Path:
        return self._lexical_store.folder

    def lexical(self) -> LexicalIndex:
        """The BM25 index of every chunk in the collection (loaded if saved for these chunks, else rebuilt)."""
        return self._lexical_store.index(self.count, lambda: self.collection.get(include=[])["ids"], self._chunks)

    def _chunks(self, ids: list[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for start in range(0, len(ids), 5000):
            rows = self.collection.get(ids=ids[start : start + 5000], include=["documents", "metadatas"])
            for chunk_id, text, meta in zip(rows["ids"], rows["documents"] or [], rows["metadatas"] or [], strict=True):
                yield chunk_id, text or "", dict(meta or {})

    def _changed(self) -> None:
        """Called before and after the collection changes (see :meth:`LexicalStore.changed`)."""
        self._lexical_store.changed()

    def rank(
        self,
        query: str,
        method: Method = "hybrid",
        depth: int = DEPTH,
        guard: SearchGuard | None = None,
        limit: int | None = None,
    ) -> list[Candidate]:
        """The first ``limit`` (default: all) candidates for ``query`` in the method's order, from the ``depth`` best of
        each ranking, with ranks, fused score, cosine, coverage, text and metadata filled in, minus the guard's
        exclusions; no cutoff."""
        tokens = tokenize(query)
        if not query.strip():
            return []
        query_vector = self.embedder.encode([query])
        excluded_items = {item for item in guard.item_ids if item} if guard is not None else set()
        dense: list[str] = []
        if method != "lexical":
            where: Any = {"item_id": {"$nin": sorted(excluded_items)}} if excluded_items else None
            result = self.collection.query(query_embeddings=query_vector, n_results=depth, where=where, include=[])
            dense = list(result["ids"][0])
        lexical: list[str] = []
        index = self.lexical() if method != "dense" else None
        if index is not None:
            hits = index.search(tokens, depth + sum(index.item_chunks[item] for item in excluded_items))
            lexical = [index.ids[hit.index] for hit in hits if index.item_ids[hit.index] not in excluded_items]
            lexical = lexical[:depth]
        readable = detect_language(query) in self.config.embedding.languages
        candidates = fuse(dense, lexical, method, self.config.rrf_k, readable)[:limit]
        if not candidates:
            return []
        rows: Any = self.collection.get(
            ids=[candidate.id for candidate in candidates], include=["documents", "metadatas", "embeddings"]
        )
        found = {
            chunk_id: (text or "", dict(meta or {}), vector)
            for chunk_id, text, meta, vector in zip(
                rows["ids"], rows["documents"], rows["metadatas"], rows["embeddings"], strict=True
            )
        }
        if len(found) < len(candidates):
            self._lexical_store.drop()  # ids the store no longer has (changed outside medcouncil): re-read next time
        candidates = [candidate for candidate in candidates if candidate.id in found]
        if not candidates:
            return []
        vectors = np.asarray([found[candidate.id][2] for candidate in candidates], dtype=np.float32)
        cosines = vectors @ query_vector[0]
        for candidate, cosine in zip(candidates, cosines, strict=True):
            candidate.text, candidate.metadata = found[candidate.id][0], found[candidate.id][1]
            candidate.cosine = float(cosine)
        if index is not None:
            indexed = [candidate for candidate in candidates if candidate.id in index.position]
            shares = index.coverages(tokens, [index.position[candidate.id] for candidate in indexed])
            for candidate, share in zip(indexed, shares, strict=True):
                candidate.coverage = share
        # Equal fused scores (ranks a, b in one list and b, a in the other) are ordered by relevance.
        candidates.sort(key=lambda candidate: (-round(candidate.fused, 12), -candidate.score(method)))
        vectors = np.asarray([found[candidate.id][2] for candidate in candidates], dtype=np.float32)
        excluded = self._near_duplicates(guard, candidates, vectors, query, query_vector)
        return [candidate for number, candidate in enumerate(candidates) if number not in excluded]

    def search(
        self, query: str, k: int | None = None, threshold: float | None = None, guard: SearchGuard | None = None
    ) -> list[Evidence]:
        """The ``k`` best chunks whose score (the method's: see :class:`KnowledgeConfig`) reaches ``threshold``,
        minus what the guard excludes.

        Raises:
            ValueError: ``k`` below 1 (``KnowledgeConfig.k``'s own bound).
        """
        k = self.config.k if k is None else checked_k(k)
        method = self.config.method
        if threshold is None:
            threshold = default_threshold(method) if self.config.threshold is None else self.config.threshold
        evidence = []
        for candidate in self.rank(query, method, max(DEPTH, k), guard, limit=max(4 * k, 20)):
            score = candidate.score(method)
            if score < threshold:
                continue
            meta = candidate.metadata
            evidence.append(
                Evidence(
                    id=candidate.id,
                    text=candidate.text,
                    score=score,
                    source=str(meta.get("source", "")),
                    title=str(meta.get("title", "")),
                    item_id=str(meta.get("item_id", "")),
                    language=str(meta.get("language", "")),
                    cosine=candidate.cosine,
                    coverage=candidate.coverage if method != "dense" else None,
                    dense_rank=candidate.dense_rank,
                    lexical_rank=candidate.lexical_rank,
                )
            )
            if len(evidence) == k:
                break
        return evidence

    def _near_duplicates(
        self,
        guard: SearchGuard | None,
        candidates: list[Candidate],
        vectors: np.ndarray[Any, Any],
        query: str,
        query_vector: np.ndarray[Any, Any],
    ) -> set[int]:
        """Indices of candidates that are near-duplicates of the guarded question."""
        if guard is None or not guard.question or not candidates:
            return set()
        question_vector = query_vector if guard.question == query else self.embedder.encode([guard.question])
        return near_duplicates(
            guard.question, [c.text for c in candidates], vectors @ question_vector[0], guard.near_duplicate
        )

    def stats(self) -> dict[str, Any]:
        rows = self.collection.get(include=["metadatas"])
        metadatas = rows["metadatas"] or []
        sources: dict[str, int] = {}
        languages: dict[str, int] = {}
        for meta in metadatas:
            sources[str(meta.get("source", ""))] = sources.get(str(meta.get("source", "")), 0) + 1
            languages[str(meta.get("language", ""))] = languages.get(str(meta.get("language", "")), 0) + 1
        return {
            "path": str(self.path),
            "collection": self.config.collection,
            "chunks": len(metadatas),
            "sources": sources,
            "languages": languages,
            "embedder": self.embedder.name,
            "space": self.space,
        }

    def prune(self, keep: set[str]) -> int:
        """Delete every chunk whose id is not in ``keep``; returns how many."""
        stale = [chunk_id for chunk_id in self.collection.get(include=[])["ids"] if chunk_id not in keep]
        if stale:
            self._delete(stale)
        return len(stale)

    def remove(self, source: str) -> int:
        """Delete every chunk of ``source``; returns how many."""
        ids = self.collection.get(where={"source": source}, include=[])["ids"]
        if ids:
            self._delete(ids)
        return len(ids)


def _under(source: str, roots: set[str]) -> bool:
    return source in roots or any(source.startswith(root + os.sep) for root in roots)


def validate_collection_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", name):
        raise ConfigError(f"collection name {name!r}: 3-512 characters of letters, digits, '.', '_', '-'")
    return name
