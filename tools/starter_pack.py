"""The starter pack: concise notes on ~30 common conditions (English, Korean titles and terms), seeded into the default
collection; demo material, not for clinical use. ``starter/vignettes.jsonl`` is its labelled retrieval set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from medcouncil.serving.common.console import err_console
from medcouncil.tools.chunking import Document
from medcouncil.tools.embeddings import Embedder
from medcouncil.tools.knowledge import DEFAULT_COLLECTION, KnowledgeBase, KnowledgeConfig

STARTER_DIR = Path(__file__).with_name("starter")
VIGNETTES = STARTER_DIR / "vignettes.jsonl"
"""Short clinical vignettes, English and Korean, each labelled with the starter notes that answer it (off-topic ones
with none): written for the retrieval evaluation (``medcouncil index eval``)."""
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


def starter_version(documents: list[Document]) -> str:
    """A hash of the notes as indexed (text, title, Korean terms): a collection seeded from another version updates."""
    rows = [[d.source, d.title, d.text, sorted(d.extra.items())] for d in documents]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]


def open_knowledge(config: KnowledgeConfig | None = None, embedder: Embedder | None = None) -> KnowledgeBase:
    """Open a knowledge base; the default collection gets the starter pack when it is first created (a seeding cut
    short by a kill is finished by the next open), and its starter notes are brought up to date when a release
    changed the pack (the collection records the pack's version and its notes).

    Removing the starter sources later (``index remove starter/asthma.md``) is respected: they are not re-added.
    A store that cannot be written (read-only, locked) still opens, with a one-line warning, and is brought up to
    date by a later open.
    """
    knowledge = KnowledgeBase(config, embedder)
    if knowledge.config.collection != DEFAULT_COLLECTION:
        return knowledge
    documents = starter_documents()
    version = starter_version(documents)
    metadata = dict(knowledge.collection.metadata or {})
    seeding = knowledge.seeding_marker.exists()
    if not seeding and metadata.get("starter_version") == version:
        return knowledge
    try:
        if seeding:
            knowledge.add(documents)  # upserts: chunks a killed seeding already stored are not embedded again
        else:
            _refresh(knowledge, documents, metadata)
        sources = json.dumps([document.source for document in documents])
        knowledge.collection.modify(metadata={**metadata, "starter_version": version, "starter_sources": sources})
        knowledge.seeding_marker.unlink(missing_ok=True)
    except Exception as error:  # Chroma raises sqlite, Rust-binding and OS errors alike
        what = "seeded" if seeding else "brought up to date"
        err_console.print(
            f"[warning]warning:[/] the starter pack could not be {what} in {escape(str(knowledge.path))} "
            f"({escape(type(error).__name__)}: {escape(str(error))}); a later open retries",
            soft_wrap=True,
        )
    return knowledge


def _refresh(knowledge: KnowledgeBase, documents: list[Document], metadata: dict[str, Any]) -> None:
    """The current notes in place of an older release's: each note still present is updated, a note new in this
    release is added, a note the release dropped is removed; a note the user removed stays removed."""
    current = {document.source for document in documents}
    try:
        recorded = set(json.loads(str(metadata.get("starter_sources", "null"))) or [])
    except ValueError:
        recorded = set()
    where: Any = {"source": {"$in": sorted(current | recorded)}}
    rows = knowledge.collection.get(where=where, include=["metadatas"])
    present = {str((meta or {}).get("source")) for meta in rows["metadatas"] or []}
    if recorded:
        wanted = [document for document in documents if document.source in present or document.source not in recorded]
    else:  # a store seeded before the pack recorded its notes: the notes present are what was seeded
        wanted = [document for document in documents if document.source in present]
    dropped = present - current  # a note this release renamed or dropped
    knowledge.add(wanted, replace=sorted({document.source for document in wanted} | dropped))
