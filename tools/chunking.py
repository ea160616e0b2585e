"""Documents → chunks at sentence boundaries, with overlap and stable content-hash ids."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from medcouncil.tools.language import detect_language

MAX_CHARS = 800
"""Longest chunk, in characters (all-MiniLM-L6-v2 reads 256 word pieces, roughly 1,000 characters)."""
OVERLAP_SENTENCES = 1
"""Sentences repeated at the start of the next chunk."""

_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n\s*\n|\n(?=[-*•#]|\d+\.\s)")


@dataclass(frozen=True)
class Document:
    """A text to index, with where it came from."""

    text: str
    source: str
    """File path or corpus name; ``index remove SOURCE`` removes by it."""
    title: str = ""
    item_id: str = ""
    """The benchmark item this text explains, if any: the contamination guard excludes it."""
    language: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    question: str = ""
    """The benchmark question this text belongs to, if any (not stored: ``index add``'s leak check reads it)."""


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    metadata: dict[str, str | int]


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def _pieces(sentence: str, max_chars: int) -> list[str]:
    """A sentence longer than a chunk is cut at word boundaries."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces, current = [], ""
    for word in sentence.split():
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*pieces, current] if current else pieces


def chunk_text(text: str, max_chars: int = MAX_CHARS, overlap: int = OVERLAP_SENTENCES) -> list[str]:
    """Greedy sentence packing up to ``max_chars``; each chunk opens with the last ``overlap`` sentences."""
    sentences = [piece for sentence in split_sentences(text) for piece in _pieces(sentence, max_chars)]
    chunks: list[str] = []
    current: list[str] = []
    fresh = 0  # sentences in ``current`` not already in the previous chunk
    for sentence in sentences:
        if current and fresh and len(" ".join([*current, sentence])) > max_chars:
            chunks.append(" ".join(current))
            current = current[-overlap:] if overlap else []
            while current and len(" ".join([*current, sentence])) > max_chars:
                current = current[1:]
            fresh = 0
        current.append(sentence)
        fresh += 1
    if current and fresh:
        chunks.append(" ".join(current))
    return chunks


def chunk_id(source: str, text: str) -> str:
    """Stable id: the same text from the same source always gets the same id, so re-ingesting is idempotent."""
    return hashlib.sha256(f"{source}\0{text}".encode()).hexdigest()[:32]


def document_key(document: Document) -> str:
    """Names the document a chunk comes from within its source: its item id, else a hash of its text (chunks of one
    document share it; two rows of one file do not)."""
    return document.item_id or hashlib.sha256(document.text.encode()).hexdigest()[:16]


def chunk_document(document: Document, max_chars: int = MAX_CHARS) -> list[Chunk]:
    language = document.language or detect_language(document.text)
    key = document_key(document)
    chunks = []
    for number, text in enumerate(chunk_text(document.text, max_chars)):
        metadata: dict[str, str | int] = {
            "source": document.source,
            "title": document.title,
            "language": language,
            "chunk": number,
            "item_id": document.item_id,
            "document": key,
            **document.extra,
        }
        chunks.append(Chunk(id=chunk_id(document.source, text), text=text, metadata=metadata))
    return chunks
