from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.tools.embeddings import BertEmbedder
from medcouncil.tools.knowledge import KnowledgeBase, KnowledgeConfig


@pytest.fixture(scope="session")
def embedder() -> BertEmbedder:
    """The packaged all-MiniLM-L6-v2, loaded once (offline, from site-packages)."""
    return BertEmbedder()


@pytest.fixture
def knowledge(tmp_path: Path, embedder: BertEmbedder) -> KnowledgeBase:
    """An empty real Chroma store in a temporary folder (not the default collection: no starter pack)."""
    return KnowledgeBase(KnowledgeConfig(path=tmp_path / "store", collection="test-kb"), embedder)
