"""From a run's journal to its numbers: per mode and subset, the paired comparisons, and what was not scored."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from medcouncil.scenarios.bench.journal import ErrorRecord, Manifest, Record
from medcouncil.scenarios.bench.metrics import Accuracy, accuracy, mcnemar
from medcouncil.scenarios.bench.modes import comparisons

ALL = "all"


class Row(Accuracy):
    """One mode on one subset (or ``all``): quality (the :class:`Accuracy` fields) and cost per question."""

    mode: str
    subset: str
    errors: int
    """Items given up with an error: not in ``n``, never counted wrong."""
    tokens: float
    prompt_tokens: float
    completion_tokens: float
    calls: float
    latency_s: float
    latency_p50_s: float
    escalated: float | None = None
    """Gated mode: share of items where the council convened."""
    letters: dict[str, int] = Field(default_factory=dict)
    """How often each letter was predicted ("-" for invalid): a model stuck on one position shows here."""


class Paired(BaseModel):
    """Two modes on the items both answered: exact McNemar test on the discordant pairs."""

    first: str
    second: str
    n: int
    first_accuracy: float
    second_accuracy: float
    only_first: int
    only_second: int
    p_value: float


def pair(first: str, second: str, a: Mapping[str, bool], b: Mapping[str, bool], keys: Iterable[str]) -> Paired:
    """Two modes' correctness (by item id) on the ``keys`` both answered, with the exact McNemar test."""
    both = [k for k in keys if k in a and k in b]
    test = mcnemar([a[k] for k in both], [b[k] for k in both])
    return Paired(
        first=first,
        second=second,
        n=len(both),
        first_accuracy=sum(a[k] for k in both) / max(len(both), 1),
        second_accuracy=sum(b[k] for k in both) / max(len(both), 1),
        only_first=test.only_first,
        only_second=test.only_second,
        p_value=test.p_value,
    )


class Summary(BaseModel):
    rows: list[Row]
    paired: list[Paired]
    items: int
    pending: int
    """Item × mode pairs neither answered nor given up (an interrupted or aborted run)."""
    errors: int
    skipped_rows: int


def _row(mode: str, subset: str, records: Sequence[Record], errors: int, seed: int) -> Row:
    scored = accuracy([r.gold for r in records], [r.letter for r in records], seed=seed)
    n = max(len(records), 1)
    gated = [r.escalated for r in records if r.escalated is not None]
    return Row(
        **scored.model_dump(),
        mode=mode,
        subset=subset,
        errors=errors,
        tokens=sum(r.tokens for r in records) / n,
        prompt_tokens=sum(r.prompt_tokens for r in records) / n,
        completion_tokens=sum(r.completion_tokens for r in records) / n,
        calls=sum(r.model_calls for r in records) / n,
        latency_s=sum(r.latency_s for r in records) / n,
        latency_p50_s=statistics.median([r.latency_s for r in records]) if records else 0.0,
        escalated=sum(gated) / len(gated) if gated else None,
        letters=dict(sorted(Counter(r.letter or "-" for r in records).items())),
    )


def summarize(manifest: Manifest, records: Sequence[Record], errors: Sequence[ErrorRecord]) -> Summary:
    modes = manifest.config.modes
    wanted = set(manifest.sample_ids)
    records = [r for r in records if r.sample_id in wanted]
    done = {r.key for r in records}
    failed = {(e.sample_id, e.mode) for e in errors if e.sample_id in wanted} - done
    by_mode: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_mode[record.mode].append(record)
    subsets = sorted({r.subset for r in records if r.subset})
    rows = []
    for mode in modes:
        failures = sum(1 for key in failed if key[1] == mode)
        rows.append(_row(mode, ALL, by_mode[mode], failures, manifest.config.seed))
        if len(subsets) > 1:
            for subset in subsets:
                chosen = [r for r in by_mode[mode] if r.subset == subset]
                rows.append(_row(mode, subset, chosen, 0, manifest.config.seed))
    paired = []
    for first, second in comparisons():
        if first in modes and second in modes:
            a = {r.sample_id: r.correct for r in by_mode[first]}
            b = {r.sample_id: r.correct for r in by_mode[second]}
            paired.append(pair(first, second, a, b, manifest.sample_ids))
    total = len(manifest.sample_ids) * len(modes)
    return Summary(
        rows=rows,
        paired=paired,
        items=len(manifest.sample_ids),
        pending=total - len(done) - len(failed),
        errors=len(failed),
        skipped_rows=manifest.dataset.skipped,
    )
