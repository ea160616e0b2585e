"""Keeping evaluation items out of training data: exact (normalised question text) and near-duplicate (embedding
similarity) matches against every evaluation set.

The evaluation sets are every registered dataset found locally (its files under the data directory: nothing is
fetched) plus any file given. A training item whose question equals an evaluation question after
:func:`normalise_text`, or whose embedding's cosine similarity to one is at least :data:`NEAR_DUPLICATE_TRAINING`,
is an overlap: it is dropped and listed with the item it matches. On the shared data, MedMCQA dev shares 2,816 of
its 4,183 questions with the MedMCQA test file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from medcouncil.scenarios.datasets.registry import DATASETS, data_dir, load_dataset, registered_files
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.tools.embeddings import CachedEncoder, Embedder
from medcouncil.tools.knowledge import NEAR_DUPLICATE

NEAR_DUPLICATE_TRAINING = NEAR_DUPLICATE
"""Cosine similarity (the knowledge base's embedder, normalised vectors) at or above which a training question
counts as a near-duplicate of an evaluation question: 0.9, the threshold the retriever's contamination guard uses.
Rewordings of the same vignette score above it; different questions on one topic score well below."""
BLOCK = 2048
"""Evaluation vectors compared at once (bounds memory: BLOCK × training items floats)."""


class EvalItem(BaseModel):
    source: str
    """The evaluation set: a registered name or a file."""
    id: str
    question: str


class Overlap(BaseModel):
    """A training item found in an evaluation set."""

    train_id: str
    kind: Literal["exact", "near"]
    eval_source: str
    eval_id: str
    similarity: float
    """1.0 for an exact match."""


def normalise_text(text: str) -> str:
    """Compatibility form, case-folded, every run of non-word characters one space: formatting does not hide a
    copy."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


def local_eval_sets(data_root: Path | None = None, against: Sequence[Path] = ()) -> list[EvalItem]:
    """Every registered dataset whose files are under the data directory, and the files in ``against``."""
    items: list[EvalItem] = []
    root = data_dir(data_root)
    for name, entry in DATASETS.items():
        if registered_files(entry, None, root) is None:
            continue  # not on this machine: never fetched for this
        samples, _ = load_dataset(name, data_root=data_root)
        items += [EvalItem(source=name, id=sample.id, question=sample.question) for sample in samples]
    for path in against:
        samples, _ = load_dataset(str(path))
        items += [EvalItem(source=str(path), id=sample.id, question=sample.question) for sample in samples]
    return items


def find_overlaps(
    train: Sequence[tuple[str, str]],
    evals: Sequence[EvalItem],
    embedder: Embedder | None,
    threshold: float = NEAR_DUPLICATE_TRAINING,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[str, Overlap]:
    """Each overlapping training item (id, question) with its closest evaluation item; exact matches first, then
    (with an embedder) near-duplicates among the rest. ``progress`` is told how many evaluation items were compared.
    """
    exact: dict[str, EvalItem] = {}
    for item in evals:
        exact.setdefault(normalise_text(item.question), item)
    found: dict[str, Overlap] = {}
    rest: list[tuple[str, str]] = []
    for train_id, question in train:
        match = exact.get(normalise_text(question))
        if match is not None:
            found[train_id] = Overlap(
                train_id=train_id, kind="exact", eval_source=match.source, eval_id=match.id, similarity=1.0
            )
        else:
            rest.append((train_id, question))
    if embedder is None or not rest or not evals:
        return found
    train_vectors = embedder.encode([question for _, question in rest])
    best = np.full(len(rest), -1.0, dtype=np.float32)
    best_at = np.zeros(len(rest), dtype=np.int64)
    encoder = CachedEncoder(embedder)  # the evaluation sets are the same run after run: encoded once
    for start in range(0, len(evals), BLOCK):
        block = evals[start : start + BLOCK]
        scores = train_vectors @ encoder.encode([item.question for item in block]).T
        top = scores.argmax(axis=1)
        value = scores[np.arange(len(rest)), top]
        better = value > best
        best[better], best_at[better] = value[better], start + top[better]
        progress(start + len(block))
    for index in np.flatnonzero(best >= threshold):
        train_id = rest[index][0]
        match = evals[int(best_at[index])]
        found[train_id] = Overlap(
            train_id=train_id,
            kind="near",
            eval_source=match.source,
            eval_id=match.id,
            similarity=round(float(best[index]), 4),
        )
    return found


def decontaminate(
    samples: Sequence[Sample],
    evals: Sequence[EvalItem],
    embedder: Embedder | None,
    threshold: float = NEAR_DUPLICATE_TRAINING,
) -> tuple[list[Sample], list[Overlap]]:
    """The samples that overlap no evaluation item, and the overlaps dropped (in the samples' order)."""
    overlaps = find_overlaps([(s.id, s.question) for s in samples], evals, embedder, threshold)
    clean = [sample for sample in samples if sample.id not in overlaps]
    return clean, [overlaps[s.id] for s in samples if s.id in overlaps]


def summarise(overlaps: Iterable[Overlap]) -> dict[str, Any]:
    """Counts by kind and by evaluation set, for the data card."""
    by_kind: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for overlap in overlaps:
        by_kind[overlap.kind] = by_kind.get(overlap.kind, 0) + 1
        by_source[overlap.eval_source] = by_source.get(overlap.eval_source, 0) + 1
    return {"by_kind": by_kind, "by_eval_set": by_source}
