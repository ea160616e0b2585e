"""The knowledge base: a persistent Chroma collection of embedded chunks, searched with a threshold and a guard.

Chroma runs embedded (``PersistentClient``) under the user data folder, telemetry off, with cosine distance set in
the collection's HNSW configuration. medcouncil computes every vector itself (see ``embeddings.py``), so Chroma's
default embedding model, which would be fetched from a hub, is never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from medcouncil.serving.common.errors import ConfigError, MedcouncilError
from medcouncil.serving.common.paths import data_dir
from medcouncil.tools.chunking import Chunk, Document, chunk_document
from medcouncil.tools.embeddings import Embedder, EmbeddingConfig, build_embedder

DEFAULT_COLLECTION = "medcouncil"
TOP_K = 5
THRESHOLD = 0.4
"""Top-k and cosine-similarity threshold of the reference Korean MedGemma setup."""
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
    threshold: float = Field(default=THRESHOLD, ge=-1, le=1)
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
    """Cosine similarity to the query."""
    source: str
    title: str = ""
    item_id: str = ""
    language: str = ""


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


def checked_k(k: int) -> int:
    """``k`` as a search may take it: at least one result (0 is not "the default", and Chroma cannot take -1)."""
    if k < 1:
        raise ValueError(f"k = {k}: a search returns at least 1 result")
    return k


def _normalised_text(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


class KnowledgeBase:
    """A Chroma collection plus the embedder that made its vectors."""

    def __init__(self, config: KnowledgeConfig | None = None, embedder: Embedder | None = None) -> None:
        self.config = config or KnowledgeConfig()
        self.embedder = embedder or build_embedder(self.config.embedding)
        self.path = self.config.store_path()
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
    ) -> AddReport:
        """Chunk, embed and upsert; chunks already stored (same id) are not embedded again."""
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
        return report

    def _flush(self, chunks: list[Chunk], report: AddReport, progress: Callable[[int], None] | None) -> None:
        unique = list({chunk.id: chunk for chunk in chunks}.values())
        existing = set(self.collection.get(ids=[chunk.id for chunk in unique], include=[])["ids"])
        fresh = [chunk for chunk in unique if chunk.id not in existing]
        if fresh:
            vectors = self.embedder.encode([chunk.text for chunk in fresh])
            self.collection.upsert(
                ids=[chunk.id for chunk in fresh],
                embeddings=vectors,
                documents=[chunk.text for chunk in fresh],
                metadatas=[chunk.metadata for chunk in fresh],  # type: ignore[misc]
            )
        report.chunks += len(chunks)
        report.new += len(fresh)
        if progress is not None:
            progress(len(chunks))

    def search(
        self, query: str, k: int | None = None, threshold: float | None = None, guard: SearchGuard | None = None
    ) -> list[Evidence]:
        """Top-``k`` chunks with cosine similarity >= ``threshold``, minus what the guard excludes.

        Raises:
            ValueError: ``k`` below 1 (``KnowledgeConfig.k``'s own bound).
        """
        k = self.config.k if k is None else checked_k(k)
        threshold = self.config.threshold if threshold is None else threshold
        total = self.count()
        if total == 0 or not query.strip():
            return []
        query_vector = self.embedder.encode([query])
        where: Any = None
        if guard is not None and guard.item_ids:
            where = {"item_id": {"$nin": sorted(guard.item_ids)}}
        fetch = min(total, k * 3 + 10 if guard is not None else k)
        near_duplicates = guard is not None and bool(guard.question)
        include: Any = ["documents", "metadatas", "distances", *(["embeddings"] if near_duplicates else [])]
        result = self.collection.query(query_embeddings=query_vector, n_results=fetch, where=where, include=include)
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        embeddings = (result.get("embeddings") or [[]])[0]
        excluded = self._guarded(guard, documents, embeddings, query, query_vector)
        evidence = []
        for index, chunk_id in enumerate(ids):
            score = 1.0 - float(distances[index])
            if score < threshold or index in excluded:
                continue
            meta = metadatas[index] or {}
            evidence.append(
                Evidence(
                    id=chunk_id,
                    text=documents[index] or "",
                    score=score,
                    source=str(meta.get("source", "")),
                    title=str(meta.get("title", "")),
                    item_id=str(meta.get("item_id", "")),
                    language=str(meta.get("language", "")),
                )
            )
        return evidence[:k]

    def _guarded(
        self,
        guard: SearchGuard | None,
        documents: list[Any],
        embeddings: Any,
        query: str,
        query_vector: np.ndarray[Any, Any],
    ) -> set[int]:
        """Indices of results that are near-duplicates of the guarded question."""
        if guard is None or not guard.question:
            return set()
        question_vector = query_vector if guard.question == query else self.embedder.encode([guard.question])
        similarities = np.asarray(embeddings, dtype=np.float32) @ question_vector[0] if len(documents) else []
        needle = _normalised_text(guard.question)[:200]
        return {
            index
            for index, text in enumerate(documents)
            if similarities[index] >= guard.near_duplicate or (needle and needle in _normalised_text(text or ""))
        }

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

    def remove(self, source: str) -> int:
        """Delete every chunk of ``source``; returns how many."""
        ids = self.collection.get(where={"source": source}, include=[])["ids"]
        if ids:
            self.collection.delete(ids=ids)
        return len(ids)


def validate_collection_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", name):
        raise ConfigError(f"collection name {name!r}: 3-512 characters of letters, digits, '.', '_', '-'")
    return name


STARTER_DIR = Path(__file__).with_name("starter")
"""Concise notes on ~30 common conditions (English, Korean titles and terms): demo material, not for clinical use."""
STARTER_SOURCE_PREFIX = "starter/"
STARTER_NOTE = "demo material, not for clinical use"


def starter_documents() -> list[Document]:
    documents = []
    for path in sorted(STARTER_DIR.glob("*.md")):
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        title = lines[0].lstrip("# ").strip()
        terms = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Korean terms:")), "")
        # The demo banner and the Korean terms go to metadata: the English embedding model reads Hangul as noise.
        body = "\n".join(line for line in lines[1:] if not line.startswith((">", "Korean terms:")))
        documents.append(
            Document(
                text=f"{title.split(' (')[0]}.\n{body.strip()}",
                source=STARTER_SOURCE_PREFIX + path.name,
                title=title,
                language="en",
                extra={"note": STARTER_NOTE, "korean_terms": terms},
            )
        )
    return documents


def open_knowledge(config: KnowledgeConfig | None = None, embedder: Embedder | None = None) -> KnowledgeBase:
    """Open a knowledge base; the default collection gets the starter pack when it is first created (a seeding cut
    short by a kill is finished by the next open).

    Removing the starter sources later (``index remove starter/asthma.md``) is respected: they are not re-added.
    """
    knowledge = KnowledgeBase(config, embedder)
    if knowledge.config.collection == DEFAULT_COLLECTION and knowledge.seeding_marker.exists():
        knowledge.add(starter_documents())  # upserts: chunks a killed seeding already stored are not embedded again
        knowledge.seeding_marker.unlink(missing_ok=True)
    return knowledge
