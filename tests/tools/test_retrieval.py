"""The retrieval method's configuration (fusion and relevance are tested in test_lexical.py)."""

from __future__ import annotations

import pytest

from medcouncil.serving.common.errors import ConfigError
from medcouncil.tools.knowledge import KnowledgeConfig
from medcouncil.tools.retrieval import COSINE_THRESHOLD, RELEVANCE_THRESHOLD, default_threshold


def test_the_method_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDCOUNCIL_RETRIEVAL", raising=False)
    assert KnowledgeConfig().method == "hybrid"
    monkeypatch.setenv("MEDCOUNCIL_RETRIEVAL", "dense")
    assert KnowledgeConfig().method == "dense"
    assert KnowledgeConfig(method="lexical").method == "lexical"
    monkeypatch.setenv("MEDCOUNCIL_RETRIEVAL", "bm25")
    with pytest.raises(ConfigError, match="MEDCOUNCIL_RETRIEVAL=bm25: choose from hybrid, dense, lexical"):
        KnowledgeConfig()


def test_each_method_has_its_cutoff() -> None:
    assert default_threshold("dense") == COSINE_THRESHOLD == 0.4
    assert default_threshold("hybrid") == default_threshold("lexical") == RELEVANCE_THRESHOLD
