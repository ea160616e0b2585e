"""How a search ranks and decides: dense, lexical or hybrid (reciprocal rank fusion), then a calibrated relevance.

Ranking. ``dense`` is the store's cosine ranking, ``lexical`` the BM25 ranking (``lexical.py``), ``hybrid`` fuses
the two by reciprocal rank fusion, score = Σ 1 / (:data:`RRF_K` + rank), over the :data:`DEPTH` best of each.

A query in a language the embedder does not read (Korean, for the shipped English MiniLM) has a noise dense
ranking: its hybrid ranking is the lexical one.

Decision. A cosine line alone drops relevant text that the general-purpose embedder scores low (the STEMI vignette
scores ``acs.md`` 0.38 under the old 0.4 line) and keeps irrelevant text it scores high. The hybrid and lexical
methods keep a candidate when its *relevance* reaches the threshold (0.5): a logistic function of a line through two
measures of the candidate, its cosine similarity to the query and its lexical coverage (the idf-weighted share of the
query's terms it contains, :meth:`LexicalIndex.coverages`), or coverage alone for a query the embedder cannot read.
It is a score with 0.5 on the calibrated boundary, not a probability. The lines were chosen by ``medcouncil index
eval --calibrate`` on the labelled sets (starter vignettes and off-topic queries, BioASQ, MedMCQA explanations):
the line that maximises the mean of (on-topic queries whose kept results include a relevant document) and
(off-topic queries with nothing kept). README, "Retrieval", gives the figures.
The dense method keeps the reference setup's bare cosine threshold (0.4) for comparison.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from medcouncil.serving.common.errors import ConfigError

Method = Literal["hybrid", "dense", "lexical"]
METHODS: tuple[Method, ...] = ("hybrid", "dense", "lexical")
RRF_K = 60
"""Reciprocal rank fusion's constant (Cormack et al. 2009): the usual 60 (see README for the measured neighbours)."""
DEPTH = 50
"""Candidates taken from each ranking before fusion."""
COSINE_THRESHOLD = 0.4
"""The dense method's cutoff: top-k and cosine threshold of the reference Korean MedGemma setup."""
RELEVANCE_WEIGHTS = (-3.8, 9.14, 4.07)
"""Intercept, cosine weight and coverage weight of the relevance (``index eval --calibrate``)."""
LEXICAL_WEIGHTS = (-0.6, 0.0, 10.0)
"""The same for a query the embedder cannot read: coverage alone."""
RELEVANCE_THRESHOLD = 0.5
"""The hybrid and lexical methods' cutoff on relevance."""


Weights = tuple[float, float, float]


def relevance(cosine: float, coverage: float, weights: Weights = RELEVANCE_WEIGHTS) -> float:
    """The relevance score of a candidate (0.5 on the calibrated boundary)."""
    bias, w_cosine, w_coverage = weights
    return 1.0 / (1.0 + math.exp(-(bias + w_cosine * cosine + w_coverage * coverage)))


def default_threshold(method: Method) -> float:
    return COSINE_THRESHOLD if method == "dense" else RELEVANCE_THRESHOLD


@dataclass
class Candidate:
    """One chunk as a ranking saw it, before the decision."""

    id: str
    fused: float = 0.0
    dense_rank: int | None = None
    lexical_rank: int | None = None
    cosine: float = 0.0
    coverage: float = 0.0
    readable: bool = True
    """Whether the embedder reads the query's language (else the decision uses coverage alone)."""
    text: str = ""
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)

    def score(self, method: Method) -> float:
        """The number the method decides on: cosine for ``dense``, relevance otherwise."""
        if method == "dense":
            return self.cosine
        return relevance(self.cosine, self.coverage, RELEVANCE_WEIGHTS if self.readable else LEXICAL_WEIGHTS)


def fuse(
    dense: list[str], lexical: list[str], method: Method, k: int = RRF_K, readable: bool = True
) -> list[Candidate]:
    """Candidates in the method's order, each with its rank in either list (from 1) and its fused score; a hybrid
    ranking of a query the embedder cannot read is the lexical ranking (its dense ranks still shown)."""
    dense_rank = {chunk_id: rank for rank, chunk_id in enumerate(dense, 1)}
    lexical_rank = {chunk_id: rank for rank, chunk_id in enumerate(lexical, 1)}
    lists = {"dense": [dense], "lexical": [lexical], "hybrid": [dense, lexical] if readable else [lexical]}[method]
    fused: dict[str, float] = {}
    for ranking in lists:
        for rank, chunk_id in enumerate(ranking, 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    first_seen = {chunk_id: number for number, chunk_id in enumerate(fused)}
    order = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], first_seen[chunk_id]))
    return [
        Candidate(chunk_id, fused[chunk_id], dense_rank.get(chunk_id), lexical_rank.get(chunk_id), readable=readable)
        for chunk_id in order
    ]


def method_from_env() -> Method:
    """``MEDCOUNCIL_RETRIEVAL``, or ``hybrid``."""
    value = os.environ.get("MEDCOUNCIL_RETRIEVAL", "hybrid")
    for method in METHODS:
        if value == method:
            return method
    raise ConfigError(f"MEDCOUNCIL_RETRIEVAL={value}: choose from {', '.join(METHODS)}")


def checked_k(k: int) -> int:
    """``k`` as a search may take it: at least one result (0 is not "the default", and Chroma cannot take -1)."""
    if k < 1:
        raise ValueError(f"k = {k}: a search returns at least 1 result")
    return k


def _normalised(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def near_duplicates(question: str, texts: Sequence[str], similarities: Sequence[float], line: float) -> set[int]:
    """Indices of the texts that are near-duplicates of a guarded benchmark question: cosine similarity at least
    ``line``, or the question's first 200 characters inside the text (normalised)."""
    needle = _normalised(question)[:200]
    return {
        number
        for number, text in enumerate(texts)
        if similarities[number] >= line or (needle and needle in _normalised(text))
    }
