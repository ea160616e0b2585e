"""``medcouncil report DIR``: a run's (or a suite's) Markdown and standalone HTML report.

The Markdown (``report.md``) has the tables; the HTML page (``report.html``, no external assets) adds an
accuracy-vs-tokens plot per mode and every item's transcript (question, evidence, each agent's turn, predicted vs
gold). A suite directory (``suite.json``) gets the reference table: one row per run, Acc and F1 per mode.
"""

from __future__ import annotations

import html
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medcouncil.scenarios.bench.journal import SAMPLES, Manifest, Record, read_errors, read_manifest, read_records
from medcouncil.scenarios.bench.modes import MODES
from medcouncil.scenarios.bench.summary import ALL, Summary, summarize
from medcouncil.serving.common.errors import ConfigError

log = logging.getLogger(__name__)

SUITE = "suite.json"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}details{margin:.4em 0}
.ok{color:#2a7}.bad{color:#c33}pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em}"""


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def result_rows(summary: Summary) -> tuple[list[str], list[list[object]]]:
    header = [
        "mode",
        "subset",
        "n",
        "acc %",
        "95% CI",
        "macro-F1",
        "invalid",
        "errors",
        "tokens/q",
        "calls/q",
        "latency/q (s)",
        "escalated",
    ]
    rows: list[list[object]] = [
        [
            r.mode,
            r.subset,
            r.n,
            _pct(r.accuracy),
            f"{_pct(r.ci_low)}–{_pct(r.ci_high)}",
            f"{r.macro_f1:.3f}",
            r.invalid,
            r.errors,
            f"{r.tokens:.0f}",
            f"{r.calls:.2f}",
            f"{r.latency_s:.2f}",
            "" if r.escalated is None else f"{_pct(r.escalated)}%",
        ]
        for r in summary.rows
    ]
    return header, rows


def paired_rows(summary: Summary) -> tuple[list[str], list[list[object]]]:
    header = ["pair", "n", "acc first %", "acc second %", "only first right", "only second right", "McNemar p"]
    rows: list[list[object]] = [
        [
            f"{p.first} vs {p.second}",
            p.n,
            _pct(p.first_accuracy),
            _pct(p.second_accuracy),
            p.only_first,
            p.only_second,
            f"{p.p_value:.3g}",
        ]
        for p in summary.paired
    ]
    return header, rows


def letter_rows(summary: Summary, golds: dict[str, int]) -> tuple[list[str], list[list[object]]]:
    letters = sorted({k for r in summary.rows for k in r.letters} | set(golds))
    rows: list[list[object]] = [["gold", *(golds.get(k, 0) for k in letters)]]
    rows += [[r.mode, *(r.letters.get(k, 0) for k in letters)] for r in summary.rows if r.subset == ALL]
    return ["", *letters], rows


def _training_row(manifest: Manifest) -> list[tuple[str, str]]:
    """The leakage check of a fine-tuned model's training data, when one was made."""
    training = manifest.training
    if training is None:
        return []
    if training.overlapping or training.note:
        return [("training data", ("WARNING: " if training.overlapping else "") + training.warning())]
    return [("training data", f"checked: none of these items is in {training.data}")]


def _overview(manifest: Manifest, summary: Summary) -> list[tuple[str, str]]:
    config, data = manifest.config, manifest.dataset
    return [
        ("dataset", f"{data.dataset} ({data.source})" + (f", subset {data.subset}" if data.subset else "")),
        ("items", f"{summary.items} (malformed rows skipped: {data.skipped})"),
        (
            "modes",
            ", ".join(config.modes)
            + "".join(
                f" ({note(config.threshold)})"
                for m in config.modes
                if m in MODES and (note := MODES[m].note) is not None
            ),
        ),
        ("model", f"{config.model} at {config.endpoint}"),
        *_training_row(manifest),
        ("choices", f"shuffled (seed {config.seed})" if config.shuffle_choices else "dataset order"),
        ("status", "finished" if manifest.finished else "unfinished"),
        ("not scored", f"{summary.errors} item×mode errors, {summary.pending} pending"),
        (
            "run log",
            f"v{manifest.schema_version}, medcouncil {manifest.medcouncil_version}, {manifest.created} → "
            f"{manifest.updated}",
        ),
    ]


def _gated_note(summary: Summary) -> str:
    rows = {r.mode: r for r in summary.rows if r.subset == ALL}
    gated = rows.get("gated")
    if gated is None or gated.escalated is None:
        return ""
    cost = ", ".join(f"{mode} {rows[mode].tokens:.0f}" for mode in ("single", "gated", "council") if mode in rows)
    return f"Gated: the council convened on {_pct(gated.escalated)}% of items; tokens per question: {cost}."


def markdown(manifest: Manifest, summary: Summary, golds: dict[str, int]) -> str:
    lines = [f"# medcouncil benchmark: {manifest.label or manifest.dataset.dataset}", ""]
    lines += [f"- **{key}**: {value}" for key, value in _overview(manifest, summary)]
    lines += ["", "## Results", "", *_table(*result_rows(summary))]
    if summary.paired:
        lines += ["", "## Paired comparison (same items)", "", *_table(*paired_rows(summary))]
    if note := _gated_note(summary):
        lines += ["", note]
    lines += [
        "",
        "## Predicted letters (a model stuck on one position shows here)",
        "",
        *_table(*letter_rows(summary, golds)),
    ]
    lines += [
        "",
        "Errors are not answers: an item the model could not be reached for is left out of n and listed "
        "under errors. Latency is wall time per question: with the LLM cache on, a call already answered "
        "(for another mode, or in an earlier run) is near-instant, so compare latency on --no-cache runs. "
        "Per-item transcripts are in report.html.",
    ]
    if manifest.dataset.skipped_rows:
        lines += ["", "## Malformed rows skipped", "", *(f"- {row}" for row in manifest.dataset.skipped_rows)]
    return "\n".join(lines) + "\n"


def plot_svg(summary: Summary, width: int = 520, height: int = 320) -> str:
    """Accuracy (with its 95% CI) against tokens per question, one point per mode."""
    rows = [r for r in summary.rows if r.subset == ALL and r.n]
    if not rows:
        return "<p>No answers yet.</p>"
    left, bottom, top, right = 60, 40, 20, 20
    x_max = max(r.tokens for r in rows) * 1.15 or 1.0

    def x(value: float) -> float:
        return left + (width - left - right) * value / x_max

    def y(value: float) -> float:
        return height - bottom - (height - bottom - top) * value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="accuracy versus tokens per question">',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="#444"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(1)}" stroke="#444"/>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" font-size="11" text-anchor="end">{tick:.0%}</text>')
    for tick in range(5):
        value = x_max * tick / 4
        parts.append(
            f'<text x="{x(value)}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{value:.0f}</text>'
        )
    parts.append(
        f'<text x="{(width + left) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
        "tokens per question</text>"
    )
    for row in rows:
        colour = MODES[row.mode].colour if row.mode in MODES else "#555"
        cx = x(row.tokens)
        parts.append(f'<line x1="{cx}" y1="{y(row.ci_low)}" x2="{cx}" y2="{y(row.ci_high)}" stroke="{colour}"/>')
        parts.append(f'<circle cx="{cx}" cy="{y(row.accuracy)}" r="5" fill="{colour}"/>')
        # Labels of points near the right edge go to their left, so none is cut off.
        anchor, dx = ("end", -8) if cx > 0.7 * width else ("start", 8)
        parts.append(
            f'<text x="{cx + dx}" y="{y(row.accuracy) - 6}" font-size="12" fill="{colour}" '
            f'text-anchor="{anchor}">{html.escape(row.mode)} {_pct(row.accuracy)}%</text>'
        )
    return "".join(parts) + "</svg>"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _transcript(sample_id: str, records: Sequence[Record]) -> str:
    first = records[0]
    question = first.episode.question
    shown = "".join(f"<li><b>{k}</b>. {html.escape(v)}</li>" for k, v in (question.options or {}).items())
    marks = " ".join(
        f'<span class="{"ok" if r.correct else "bad"}">{html.escape(r.mode)}: {r.letter or "invalid"}</span>'
        for r in records
    )
    parts = [
        f"<details><summary>{html.escape(sample_id)}: gold {first.gold} · {marks}</summary>",
        f"<pre>{html.escape(question.text)}</pre><ol type='A'>{shown}</ol>",
    ]
    if first.order:
        parts.append(f"<p>Shown order (dataset letters): {' '.join(first.order)}</p>")
    for record in records:
        parts.append(
            f"<h4>{html.escape(record.mode)}: predicted {record.letter or 'invalid'} (gold {record.gold}); "
            f"{record.tokens} tokens, {record.model_calls} calls, {record.latency_s:.2f} s</h4>"
        )
        for turn in record.episode.turns:
            parts.append(f"<p><b>{html.escape(turn.agent)}</b> ({turn.kind})</p><pre>{html.escape(turn.content)}</pre>")
            if turn.evidence:
                items = "".join(
                    f"<li>[{html.escape(e.source)}] {e.score:.2f}: {html.escape(e.text[:400])}</li>"
                    for e in turn.evidence
                )
                parts.append(f"<ol>{items}</ol>")
    return "".join(parts) + "</details>"


def html_page(manifest: Manifest, summary: Summary, records: Sequence[Record], golds: dict[str, int]) -> str:
    title = html.escape(f"medcouncil benchmark: {manifest.label or manifest.dataset.dataset}")
    overview = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in _overview(manifest, summary))
    by_item: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_item[record.sample_id].append(record)
    order = {mode: n for n, mode in enumerate(manifest.config.modes)}
    transcripts = "".join(
        _transcript(i, sorted(by_item[i], key=lambda r: order.get(r.mode, 9)))
        for i in manifest.sample_ids
        if i in by_item
    )
    paired = f"<h2>Paired comparison</h2>{_html_table(*paired_rows(summary))}" if summary.paired else ""
    skipped = "".join(f"<li>{html.escape(row)}</li>" for row in manifest.dataset.skipped_rows)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1><ul>{overview}</ul><h2>Results</h2>{_html_table(*result_rows(summary))}"
        f"{paired}<p>{html.escape(_gated_note(summary))}</p><h2>Predicted letters</h2>"
        f"{_html_table(*letter_rows(summary, golds))}<h2>Accuracy vs tokens per question</h2>"
        f"{plot_svg(summary)}"
        + (f"<h2>Malformed rows skipped</h2><ul>{skipped}</ul>" if skipped else "")
        + f"<h2>Transcripts</h2>{transcripts}</body></html>"
    )


def reference_table(directory: Path) -> tuple[str, str]:
    """The suite's table, Markdown and HTML: one row per run, Acc and F1 (%) per mode; '–' where a run is missing."""
    suite = json.loads((directory / SUITE).read_text(encoding="utf-8"))
    modes: list[str] = suite["modes"]
    header = ["dataset", *[f"{mode} {metric}" for mode in modes for metric in ("Acc", "F1")], "n", "note"]
    rows: list[list[object]] = []
    for entry in suite["runs"]:
        run_dir = directory / entry["dir"]
        if not (run_dir / "run.json").exists():
            rows.append([entry["label"], *["–"] * (2 * len(modes)), 0, entry.get("note", "not run")])
            continue
        summary = load_run(run_dir).summary
        by_mode = {r.mode: r for r in summary.rows if r.subset == ALL}
        cells = [
            v
            for m in modes
            for v in (
                (_pct(by_mode[m].accuracy), _pct(by_mode[m].macro_f1)) if m in by_mode and by_mode[m].n else ("–", "–")
            )
        ]
        rows.append([entry["label"], *cells, summary.items, entry.get("note", "")])
    text = "\n".join([f"# medcouncil reference table ({', '.join(modes)})", "", *_table(header, rows)]) + "\n"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>reference table</title><style>{STYLE}</style>"
        f"</head><body><h1>Reference table</h1>{_html_table(header, rows)}</body></html>"
    )
    return text, page


@dataclass
class Run:
    """A run as read from its folder, summarised once."""

    manifest: Manifest
    records: list[Record]
    summary: Summary


def load_run(directory: Path) -> Run:
    """The run in ``directory``; journal rows of items or modes its manifest does not hold are left out, warned.

    Raises: ConfigError: no such directory, or not a run.
    """
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory")
    manifest = read_manifest(directory)
    ids, modes = set(manifest.sample_ids), set(manifest.config.modes)
    held: list[Record] = []
    foreign: list[Record] = []
    for record in read_records(directory):
        (held if record.sample_id in ids and record.mode in modes else foreign).append(record)
    if foreign:
        log.warning(
            "%s: %d journal rows name an item or mode this run does not hold (first: %s in mode %s): left out "
            "(a journal copied from another run?)",
            directory / SAMPLES,
            len(foreign),
            foreign[0].sample_id,
            foreign[0].mode,
        )
    return Run(manifest, held, summarize(manifest, held, read_errors(directory)))


def write_report(directory: Path, run: Run | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into a run (``run``: already loaded) or suite directory.

    Raises:
        ConfigError: the directory is neither a run nor a suite.
    """
    if (directory / SUITE).exists():
        text, page = reference_table(directory)
    else:
        run = run or load_run(directory)
        manifest, summary, records = run.manifest, run.summary, run.records
        first_mode = [r for r in records if r.mode == manifest.config.modes[0]]
        golds = dict(Counter(r.gold for r in first_mode))
        text, page = markdown(manifest, summary, golds), html_page(manifest, summary, records, golds)
    md_path, html_path = directory / "report.md", directory / "report.html"
    md_path.write_text(text, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path
