"""The knowledge-search tool the retriever calls, and an in-memory implementation of the same interface."""

from __future__ import annotations

import re
from typing import Protocol

from medcouncil.tools.chunking import Document, chunk_document
from medcouncil.tools.knowledge import NEAR_DUPLICATE, Evidence, SearchGuard
from medcouncil.tools.retrieval import checked_k


class KnowledgeSearch(Protocol):
    """What the retriever needs: :class:`medcouncil.tools.knowledge.KnowledgeBase` implements it."""

    def search(
        self, query: str, k: int | None = None, threshold: float | None = None, guard: SearchGuard | None = None
    ) -> list[Evidence]: ...


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"\w+", text.lower()) if len(word) > 2}


class InMemoryKnowledge:
    """Word-overlap search over a few documents (tests, demos): score = |shared words| / |query words|."""

    def __init__(self, documents: list[Document], k: int = 5, threshold: float = 0.2) -> None:
        self.chunks = [chunk for document in documents for chunk in chunk_document(document)]
        self.k = k
        self.threshold = threshold

    def search(
        self, query: str, k: int | None = None, threshold: float | None = None, guard: SearchGuard | None = None
    ) -> list[Evidence]:
        wanted = _words(query)
        if not wanted:
            return []
        question = _words(guard.question) if guard and guard.question else set()
        results = []
        for chunk in self.chunks:
            words = _words(chunk.text)
            if guard and str(chunk.metadata.get("item_id")) in guard.item_ids:
                continue
            if question and len(words & question) / max(1, len(question)) >= NEAR_DUPLICATE:
                continue
            score = len(words & wanted) / len(wanted)
            if score >= (self.threshold if threshold is None else threshold):
                meta = chunk.metadata
                results.append(
                    Evidence(
                        id=chunk.id,
                        text=chunk.text,
                        score=score,
                        source=str(meta["source"]),
                        title=str(meta["title"]),
                        item_id=str(meta["item_id"]),
                        language=str(meta["language"]),
                    )
                )
        results.sort(key=lambda evidence: -evidence.score)
        return results[: self.k if k is None else checked_k(k)]
