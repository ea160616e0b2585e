"""Model against model: finished bench runs compared on the items they share, mode by mode.

Each run is one model (the base, an adapter, another endpoint). For every mode present in the runs, each model's
accuracy with its 95% bootstrap CI, macro-F1 and tokens per question, and every model against the first (the
reference) on the same items: the exact McNemar test with its discordant counts. Runs of different datasets are
refused; runs of the same dataset with different item lists are compared on the items they share, and say so.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from medcouncil.scenarios.bench.metrics import accuracy, mcnemar
from medcouncil.scenarios.bench.report import STYLE, Run, _html_table, _pct, _table, load_run
from medcouncil.scenarios.bench.summary import Paired
from medcouncil.serving.common.errors import ConfigError


class ModelRow(BaseModel):
    label: str
    mode: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    macro_f1: float
    invalid: int
    tokens: float
    letters: dict[str, int]


class Versus(Paired):
    """A model (``first``) against the reference (``second``) in one mode."""

    mode: str


LEFT_OUT = "left out of each run's item list (unanswered by it or by another run)"
"""How the CLI line and the Markdown report name :attr:`Comparison.dropped`."""


class Comparison(BaseModel):
    labels: list[str]
    directories: list[str]
    dataset: str
    items: int
    """Items every run answered in at least one common mode."""
    dropped: dict[str, int]
    """Per run: items of its list left out of the comparison (unanswered by it or by another run); with a limit,
    of those among the reference's first ``limit`` items."""
    limit: int | None = None
    """Only the reference run's first ``limit`` items were compared (``compare --limit``)."""
    rows: list[ModelRow]
    versus: list[Versus]


def _labels(runs: Sequence[tuple[Path, Run]]) -> list[str]:
    names = [run.manifest.config.model or directory.name for directory, run in runs]
    if len(set(names)) < len(names):
        names = [f"{name} ({directory.name})" for name, (directory, _) in zip(names, runs, strict=True)]
    return names


def compare(directories: Sequence[Path], seed: int = 0, limit: int | None = None) -> Comparison:
    """The runs on the items every one answered; with ``limit``, on the first run's first ``limit`` items only (its
    manifest order: the first 100 of two 300-item runs).

    Raises: ConfigError: fewer than two runs, runs of different datasets, or no item or mode in common.
    """
    if len(directories) < 2:
        raise ConfigError("compare needs at least two run folders")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {limit}")
    resolved = [Path(d).resolve() for d in directories]
    if twice := sorted({str(d) for d in resolved if resolved.count(d) > 1}):
        raise ConfigError(f"{twice[0]} is given twice: compare different runs (a run against itself tests nothing)")
    runs = [(directory, load_run(directory)) for directory in directories]
    datasets = {run.manifest.dataset.dataset for _, run in runs}
    sources = {Path(run.manifest.dataset.source).name for _, run in runs}
    if len(datasets) > 1 and len(sources) > 1:
        raise ConfigError(f"the runs are of different datasets ({', '.join(sorted(datasets))}): compare runs of one")
    modes = [m for m in runs[0][1].manifest.config.modes if all(m in r.manifest.config.modes for _, r in runs[1:])]
    if not modes:
        raise ConfigError("the runs have no mode in common")
    labels = _labels(runs)
    answered = [{(rec.sample_id, rec.mode): rec for rec in run.records} for _, run in runs]
    scope = runs[0][1].manifest.sample_ids[:limit]
    common = [i for i in scope if all(any((i, m) in a for m in modes) for a in answered)]
    if not common:
        raise ConfigError("the runs share no answered item: were they run on the same dataset and options?")
    keep = set(common)
    within = set(scope)  # with a limit, items past it are not "left out"
    dropped = {
        label: len({i for i in run.manifest.sample_ids if limit is None or i in within} - keep)
        for label, (_, run) in zip(labels, runs, strict=True)
    }
    rows: list[ModelRow] = []
    versus: list[Versus] = []
    for mode in modes:
        items = [i for i in common if all((i, mode) in a for a in answered)]
        for label, records in zip(labels, answered, strict=True):
            chosen = [records[(i, mode)] for i in items]
            scored = accuracy([r.gold for r in chosen], [r.letter for r in chosen], seed=seed)
            letters: dict[str, int] = {}
            for record in chosen:
                letters[record.letter or "-"] = letters.get(record.letter or "-", 0) + 1
            rows.append(
                ModelRow(
                    label=label,
                    mode=mode,
                    n=scored.n,
                    accuracy=scored.accuracy,
                    ci_low=scored.ci_low,
                    ci_high=scored.ci_high,
                    macro_f1=scored.macro_f1,
                    invalid=scored.invalid,
                    tokens=sum(r.tokens for r in chosen) / max(len(chosen), 1),
                    letters=dict(sorted(letters.items())),
                )
            )
        reference = [answered[0][(i, mode)].correct for i in items]
        for label, records in zip(labels[1:], answered[1:], strict=True):
            other = [records[(i, mode)].correct for i in items]
            test = mcnemar(other, reference)
            versus.append(
                Versus(
                    mode=mode,
                    first=label,
                    second=labels[0],
                    n=len(items),
                    first_accuracy=sum(other) / max(len(items), 1),
                    second_accuracy=sum(reference) / max(len(items), 1),
                    only_first=test.only_first,
                    only_second=test.only_second,
                    p_value=test.p_value,
                )
            )
    return Comparison(
        labels=labels,
        directories=[str(d) for d in directories],
        dataset=runs[0][1].manifest.dataset.dataset,
        items=len(common),
        dropped=dropped,
        limit=limit,
        rows=rows,
        versus=versus,
    )


def tables(comparison: Comparison) -> tuple[tuple[list[str], list[list[object]]], tuple[list[str], list[list[object]]]]:
    """(header, rows) of the per-model results and of the paired tests."""
    letters = sorted({k for r in comparison.rows for k in r.letters})
    header = ["mode", "model", "n", "acc %", "95% CI", "macro-F1", "invalid", "tokens/q", *letters]
    rows: list[list[object]] = [
        [
            r.mode,
            r.label,
            r.n,
            _pct(r.accuracy),
            f"{_pct(r.ci_low)}–{_pct(r.ci_high)}",
            f"{r.macro_f1:.3f}",
            r.invalid,
            f"{r.tokens:.0f}",
            *(r.letters.get(k, 0) for k in letters),
        ]
        for r in comparison.rows
    ]
    paired_header = [
        "mode",
        "model vs reference",
        "n",
        "acc model %",
        "acc reference %",
        "only model right",
        "only reference right",
        "McNemar p",
    ]
    paired: list[list[object]] = [
        [
            v.mode,
            f"{v.first} vs {v.second}",
            v.n,
            _pct(v.first_accuracy),
            _pct(v.second_accuracy),
            v.only_first,
            v.only_second,
            f"{v.p_value:.3g}",
        ]
        for v in comparison.versus
    ]
    return (header, rows), (paired_header, paired)


def scope(comparison: Comparison) -> str:
    """What a limited comparison covers, said beside its item count ("" without a limit)."""
    if comparison.limit is None:
        return ""
    return f", within the reference's first {comparison.limit} items (--limit)"


def markdown(comparison: Comparison) -> str:
    (header, rows), (paired_header, paired) = tables(comparison)
    lines = [f"# medcouncil comparison: {comparison.dataset}", ""]
    lines += [
        f"- **{label}**: {directory}"
        for label, directory in zip(comparison.labels, comparison.directories, strict=True)
    ]
    lines += [f"- **items compared**: {comparison.items} (reference: {comparison.labels[0]}){scope(comparison)}"]
    if any(comparison.dropped.values()):
        lines += [f"- **{LEFT_OUT}**: " + ", ".join(f"{k} {v}" for k, v in comparison.dropped.items())]
    lines += ["", "## Accuracy per model (letters: how often each was predicted)", "", *_table(header, rows)]
    lines += ["", "## Each model against the reference, same items (exact McNemar)", "", *_table(paired_header, paired)]
    return "\n".join(lines) + "\n"


def html_page(comparison: Comparison) -> str:
    (header, rows), (paired_header, paired) = tables(comparison)
    runs = "".join(
        f"<li><b>{html.escape(label)}</b>: {html.escape(directory)}</li>"
        for label, directory in zip(comparison.labels, comparison.directories, strict=True)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>comparison</title><style>{STYLE}</style>"
        f"</head><body><h1>Comparison: {html.escape(comparison.dataset)}</h1><ul>{runs}</ul>"
        f"<p>{comparison.items} items compared; reference {html.escape(comparison.labels[0])}"
        f"{html.escape(scope(comparison))}.</p>"
        f"<h2>Accuracy per model</h2>{_html_table(header, rows)}"
        f"<h2>Against the reference (exact McNemar)</h2>{_html_table(paired_header, paired)}"
        "</body></html>"
    )


def write(comparison: Comparison, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "compare.md", out / "compare.html"
    md_path.write_text(markdown(comparison), encoding="utf-8")
    html_path.write_text(html_page(comparison), encoding="utf-8")
    (out / "compare.json").write_text(comparison.model_dump_json(indent=2), encoding="utf-8")
    return md_path, html_path
