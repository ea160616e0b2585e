"""Retrieval quality on a labelled set: recall@1/5/10, MRR and nDCG@10 for each method, with bootstrap intervals,
and how the relevance decision treats relevant and off-topic queries.

Rankings are compared at the level of documents (source and item id): a document cut into several chunks counts
once, at its best chunk's rank. nDCG uses binary gains. Intervals are percentile bootstraps over queries (2,000
resamples, seed 0). Each query's ranks are kept (:class:`QueryRanks`) and written to a JSONL file, so that two runs
can be compared query by query.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from pydantic import BaseModel

from medcouncil.scenarios.retrieval.sets import LabelledQuery, RetrievalSet
from medcouncil.tools.knowledge import KnowledgeBase
from medcouncil.tools.retrieval import RELEVANCE_THRESHOLD, Candidate, Method, Weights, default_threshold, relevance

CUTOFFS = (1, 5, 10)
KEPT = 5
"""Results a search keeps at most (the default k)."""
CONSIDERED = 20
"""Candidates a search considers for them (``KnowledgeBase.search``: 4 k, at least 20)."""
STEEPNESS = 10.0
"""Scale of calibrated weights: the relevance goes from 0.27 to 0.73 across 0.1 of the line's measure."""


class QueryRanks(BaseModel):
    """One query under one method."""

    set: str
    query: str
    method: str
    language: str
    relevant: int
    """Relevant keys of the query (0: off-topic)."""
    first_rank: int | None
    """Rank (from 1) of the first relevant document; None: not in the candidates."""
    recall: dict[str, float]
    reciprocal_rank: float
    ndcg10: float
    kept: int
    """Results the method's decision keeps at its default threshold (at most 5)."""
    kept_relevant: bool
    """Whether they include a relevant document."""
    top: list[str]
    """The first documents, as ``source#item``."""


class MetricRow(BaseModel):
    set: str
    method: str
    queries: int
    values: dict[str, tuple[float, float, float]]
    """metric → (mean, ci low, ci high)."""


def keys_of(candidate: Candidate) -> set[str]:
    meta = candidate.metadata
    source = str(meta.get("source", ""))
    keys = {candidate.id, source, PurePosixPath(source).name}
    if meta.get("item_id"):
        keys.add(str(meta["item_id"]))
    return keys


def document_of(candidate: Candidate) -> str:
    """The document a chunk belongs to: its source and document key (item id, else a hash of the document's text;
    collections indexed before the key existed fall back to the item id)."""
    meta = candidate.metadata
    return f"{meta.get('source', '')}#{meta.get('document') or meta.get('item_id', '')}"


def score_ranking(
    relevant: frozenset[str], documents: Sequence[set[str]]
) -> tuple[int | None, dict[str, float], float]:
    """First relevant rank, recall at each cutoff, nDCG@10 of a ranking of documents (each given by its keys)."""
    found: set[str] = set()
    first: int | None = None
    recall: dict[str, float] = {}
    dcg = 0.0
    for rank, keys in enumerate(documents, 1):
        new = (keys & relevant) - found
        if new:
            first = first or rank
            found |= new
            if rank <= 10:
                dcg += 1 / math.log2(rank + 1)
        if rank in CUTOFFS:
            recall[f"recall@{rank}"] = len(found) / len(relevant)
    for cutoff in CUTOFFS:
        recall.setdefault(f"recall@{cutoff}", len(found) / len(relevant))
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), 10) + 1))
    return first, recall, dcg / ideal


def collapse(candidates: Sequence[Candidate]) -> list[tuple[Candidate, set[str]]]:
    """Each document once, in ranking order: its best chunk, with the keys of all its chunks among the candidates
    (a query labelled with a chunk id finds the document whichever of its chunks ranks first)."""
    documents: dict[str, tuple[Candidate, set[str]]] = {}
    for candidate in candidates:
        _, keys = documents.setdefault(document_of(candidate), (candidate, set()))
        keys |= keys_of(candidate)
    return list(documents.values())


@dataclass(frozen=True)
class QueryCandidates:
    """A query's first hybrid candidates as the decision sees them (for calibration)."""

    set: str
    readable: bool
    off_topic: bool
    rows: tuple[tuple[float, float, bool], ...]
    """(cosine, coverage, relevant) of each candidate, in ranking order."""


def evaluate(
    knowledge: KnowledgeBase,
    labelled: RetrievalSet,
    methods: Sequence[Method],
    progress: Callable[[], None] = lambda: None,
) -> tuple[list[QueryRanks], list[QueryCandidates]]:
    """Per-query ranks for every method, and each query's first hybrid candidates (for calibration)."""
    results: list[QueryRanks] = []
    groups: list[QueryCandidates] = []
    for query in labelled.queries:
        for method in methods:  # no guard: a set's relevant items may be its queries' own texts (medmcqa)
            documents = collapse(knowledge.rank(query.text, method, limit=60))
            results.append(_ranks(labelled.name, query, method, documents))
            if method == "hybrid" and documents:
                rows = tuple((c.cosine, c.coverage, bool(keys & query.relevant)) for c, keys in documents[:CONSIDERED])
                groups.append(QueryCandidates(labelled.name, documents[0][0].readable, not query.relevant, rows))
        progress()
    return results, groups


def kept_by(
    documents: Sequence[tuple[Candidate, set[str]]], method: Method, threshold: float
) -> list[tuple[Candidate, set[str]]]:
    """What a search keeps: the first :data:`KEPT` of the first :data:`CONSIDERED` documents reaching the cutoff."""
    return [(c, keys) for c, keys in documents[:CONSIDERED] if c.score(method) >= threshold][:KEPT]


def _ranks(name: str, query: LabelledQuery, method: Method, documents: list[tuple[Candidate, set[str]]]) -> QueryRanks:
    kept = kept_by(documents, method, default_threshold(method))
    first: int | None = None
    recall: dict[str, float] = {}
    reciprocal = ndcg = 0.0
    if query.relevant:
        first, recall, ndcg = score_ranking(query.relevant, [keys for _, keys in documents])
        reciprocal = 1 / first if first else 0.0
    return QueryRanks(
        set=name,
        query=query.id,
        method=method,
        language=query.language,
        relevant=len(query.relevant),
        first_rank=first,
        recall=recall,
        reciprocal_rank=reciprocal,
        ndcg10=ndcg,
        kept=len(kept),
        kept_relevant=any(keys & query.relevant for _, keys in kept),
        top=[document_of(candidate) for candidate, _ in documents[:3]],
    )


def bootstrap(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap 95% interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(data.mean()), float(low), float(high)


def summarise(ranks: Sequence[QueryRanks], name: str, method: str, language: str | None = None) -> MetricRow:
    rows = [r for r in ranks if r.method == method and r.relevant and (language is None or r.language == language)]
    values = {
        **{f"recall@{c}": bootstrap([r.recall[f"recall@{c}"] for r in rows]) for c in CUTOFFS},
        "MRR": bootstrap([r.reciprocal_rank for r in rows]),
        "nDCG@10": bootstrap([r.ndcg10 for r in rows]),
    }
    return MetricRow(set=name, method=method, queries=len(rows), values=values)


class Decision(BaseModel):
    """How a method's decision treats the set's queries (results kept among the top 5)."""

    answered_with_relevant: float
    """On-topic queries whose kept results include a relevant document."""
    silent_on_topic: float
    """On-topic queries with nothing kept."""
    silent_off_topic: float | None
    """Off-topic queries with nothing kept (the no-evidence path); None without off-topic queries."""


def decision(ranks: Sequence[QueryRanks], method: str) -> Decision:
    on = [r for r in ranks if r.method == method and r.relevant]
    off = [r for r in ranks if r.method == method and not r.relevant]
    return Decision(
        answered_with_relevant=sum(r.kept_relevant for r in on) / max(1, len(on)),
        silent_on_topic=sum(r.kept == 0 for r in on) / max(1, len(on)),
        silent_off_topic=sum(r.kept == 0 for r in off) / len(off) if off else None,
    )


def decision_score(groups: Sequence[QueryCandidates], weights: Weights) -> float:
    """Mean of the share of on-topic queries whose kept results include a relevant document (averaged over the
    sets) and the share of off-topic queries with nothing kept (when there are any)."""
    found: dict[str, list[bool]] = {}
    silent: list[bool] = []
    for group in groups:
        kept = [row for row in group.rows if relevance(row[0], row[1], weights) >= RELEVANCE_THRESHOLD][:KEPT]
        if group.off_topic:
            silent.append(not kept)
        else:
            found.setdefault(group.set, []).append(any(row[2] for row in kept))
    parts = [sum(hits) / len(hits) for hits in found.values()]
    on_topic = sum(parts) / len(parts) if parts else 0.0
    return (on_topic + sum(silent) / len(silent)) / 2 if silent else on_topic


def calibrate(groups: Sequence[QueryCandidates], readable: bool) -> tuple[Weights, float]:
    """The decision line with the best :func:`decision_score` over a grid: for readable queries a direction in the
    (cosine, coverage) plane and an offset; for the others an offset on coverage alone. Where several offsets tie,
    the middle of the widest run of tied offsets is taken (the line farthest from both kinds of error). Weights are
    scaled by :data:`STEEPNESS`."""
    family = [group for group in groups if group.readable == readable]
    angles = np.linspace(0, np.pi / 2, 31) if readable else np.asarray([np.pi / 2])
    offsets = np.linspace(0.0, 1.0, 101)
    scores = np.asarray(
        [[decision_score(family, _weights(float(angle), float(offset))) for offset in offsets] for angle in angles]
    )
    best = scores.max()
    widest = (0, 0, 0)  # (length, angle index, middle offset index)
    for row, line in enumerate(scores):
        run = 0
        for column, value in enumerate([*line, -np.inf]):
            if value >= best - 1e-9:
                run += 1
                continue
            if run > widest[0]:
                widest = (run, row, column - 1 - run // 2)
            run = 0
    return _weights(float(angles[widest[1]]), float(offsets[widest[2]])), float(best)


def _weights(angle: float, offset: float) -> Weights:
    return (-STEEPNESS * offset, STEEPNESS * math.cos(angle), STEEPNESS * math.sin(angle))
