"""The starter pack: concise notes on ~30 common conditions (English, Korean titles and terms), seeded into the default
collection; demo material, not for clinical use. ``starter/vignettes.jsonl`` is its labelled retrieval set."""

from __future__ import annotations

from pathlib import Path

from medcouncil.tools.chunking import Document

STARTER_DIR = Path(__file__).with_name("starter")
VIGNETTES = STARTER_DIR / "vignettes.jsonl"
"""Short clinical vignettes, English and Korean, each labelled with the starter notes that answer it (off-topic ones
with none): written for the retrieval evaluation (``medcouncil index eval``)."""
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
