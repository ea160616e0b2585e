"""The episode run's report: accuracy with its CI per mode, the paired tests, what the doctors did and spent, static
vs interactive on the same items (the gap is the headline), and every dialogue's transcript.

``report.md``, ``report.html`` and ``summary.json`` in the run folder. Failed attempts that were given up on are not
scored and are counted as such; an engine refusal is a wrong answer with its reason.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from medcouncil.scenarios.bench.metrics import bootstrap_ci
from medcouncil.scenarios.bench.summary import Paired, pair
from medcouncil.scenarios.episodes.harness import STATIC, EpisodeManifest, EpisodeRecord, expected


class ModeRow(BaseModel):
    mode: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    questions: float
    exams: float
    tests: float
    invalid: float
    cost: float
    turns: float
    tokens: float
    calls: float
    seconds: float
    overhead: float
    """Share of wall time not spent waiting on a model (orchestration: prompts, lookups, judging, journaling)."""
    failures: int
    methods: dict[str, int]
    """How the verdicts were reached (letter, exact, alias, embedding, judge, none)."""


class EpisodeSummary(BaseModel):
    cases: int
    pending: int
    errors: int
    rows: list[ModeRow]
    paired: list[Paired]
    gaps: list[Paired]
    """Static vs interactive, per doctor, on the cases that have both."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _row(mode: str, records: Sequence[EpisodeRecord], seed: int = 0) -> ModeRow:
    hits = [r.correct for r in records]
    low, high = bootstrap_ci(hits, seed=seed)
    wall = sum(r.wall_time_s for r in records)
    methods: dict[str, int] = defaultdict(int)
    for record in records:
        methods[record.verdict.method] += 1
    return ModeRow(
        mode=mode,
        n=len(records),
        correct=sum(hits),
        accuracy=_mean([float(h) for h in hits]),
        ci_low=low,
        ci_high=high,
        questions=_mean([r.questions for r in records]),
        exams=_mean([r.exams for r in records]),
        tests=_mean([r.tests for r in records]),
        invalid=_mean([r.invalid for r in records]),
        cost=_mean([r.cost for r in records]),
        turns=_mean([r.turns for r in records]),
        tokens=_mean([r.tokens for r in records]),
        calls=_mean([r.model_calls for r in records]),
        seconds=_mean([r.wall_time_s for r in records]),
        overhead=max(0.0, 1 - sum(r.model_time_s for r in records) / wall) if wall else 0.0,
        failures=sum(r.failure is not None for r in records),
        methods=dict(methods),
    )


def _pair(first: str, second: str, by_mode: dict[str, dict[str, EpisodeRecord]]) -> Paired | None:
    a = {case: record.correct for case, record in by_mode.get(first, {}).items()}
    b = {case: record.correct for case, record in by_mode.get(second, {}).items()}
    found = pair(first, second, a, b, a)
    return found if found.n else None


def summarize(manifest: EpisodeManifest, records: Sequence[EpisodeRecord], errors: int) -> EpisodeSummary:
    modes = [m for m in manifest.modes if m in {r.mode for r in records}]
    modes += sorted({r.mode for r in records} - set(modes))
    by_mode: dict[str, dict[str, EpisodeRecord]] = defaultdict(dict)
    for record in records:
        by_mode[record.mode][record.case_id] = record
    rows = [_row(mode, list(by_mode[mode].values())) for mode in modes]
    interactive = [m for m in modes if not m.startswith(STATIC)]
    paired = [p for i, a in enumerate(interactive) for b in interactive[i + 1 :] if (p := _pair(a, b, by_mode))]
    gaps = [p for m in interactive if (p := _pair(f"{STATIC}{m}", m, by_mode))]
    have = {r.key for r in records}
    pending = len(expected(manifest) - have)
    return EpisodeSummary(
        cases=len(manifest.case_ids), pending=pending, errors=errors, rows=rows, paired=paired, gaps=gaps
    )


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def result_rows(summary: EpisodeSummary) -> tuple[list[str], list[list[str]]]:
    header = [
        "mode",
        "n",
        "acc%",
        "95% CI",
        "asked",
        "exams",
        "tests",
        "invalid",
        "cost",
        "turns",
        "tok/case",
        "calls/case",
        "s/case",
        "overhead%",
    ]
    rows = [
        [
            r.mode,
            str(r.n),
            _pct(r.accuracy),
            f"{_pct(r.ci_low)}–{_pct(r.ci_high)}",
            f"{r.questions:.1f}",
            f"{r.exams:.1f}",
            f"{r.tests:.1f}",
            f"{r.invalid:.1f}",
            f"{r.cost:.0f}",
            f"{r.turns:.1f}",
            f"{r.tokens:.0f}",
            f"{r.calls:.1f}",
            f"{r.seconds:.1f}",
            f"{100 * r.overhead:.2f}",
        ]
        for r in summary.rows
    ]
    return header, rows


def pair_rows(pairs: Sequence[Paired]) -> tuple[list[str], list[list[str]]]:
    header = ["first", "second", "n", "first acc%", "second acc%", "gap (pp)", "only first", "only second", "McNemar p"]
    rows = [
        [
            p.first,
            p.second,
            str(p.n),
            _pct(p.first_accuracy),
            _pct(p.second_accuracy),
            f"{100 * (p.second_accuracy - p.first_accuracy):+.1f}",
            str(p.only_first),
            str(p.only_second),
            f"{p.p_value:.3g}",
        ]
        for p in pairs
    ]
    return header, rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def transcript_lines(record: EpisodeRecord) -> list[str]:
    """The dialogue of one case in one mode, as plain lines."""
    mark = "correct" if record.correct else "wrong"
    lines = [
        f"{record.mode}: {mark}: {record.diagnosis or '(none)'} [{record.verdict.method}: "
        f"{record.verdict.reason}]; {record.tokens} tokens, {record.model_calls} calls"
    ]
    if record.failure:
        lines.append(f"  failed: {record.failure}")
    if record.interview is not None:
        for step in record.interview.steps:
            who = "Doctor" if step.by == "doctor" else step.by.capitalize()
            text = f"{who} ({step.kind}): {step.text}" if step.by == "doctor" else f"{who}: {step.text}"
            if step.original:
                text += f"  [{step.original}]"
            if step.cost:
                text += f"  (cost {step.cost:g})"
            lines.append("  " + text.replace("\n", " / "))
        if record.interview.diagnosis_translated:
            lines.append(f"  Diagnosis in the case's language: {record.interview.diagnosis_translated}")
    elif record.static is not None:
        lines.append(f"  (static: the whole case at once) {record.static.answer_en or record.static.answer}"[:600])
    return lines


def markdown(manifest: EpisodeManifest, summary: EpisodeSummary, records: Sequence[EpisodeRecord]) -> str:
    config = manifest.config
    out = [
        f"# medcouncil episodes: {manifest.source}",
        "",
        f"- cases: {summary.cases} · modes: {', '.join(manifest.modes)} · budget {config.budget} actions · "
        f"patient: {config.patient} · judge model: {config.judge_model or 'none'}",
        f"- model: {config.model} at {config.endpoint} · response cache: {'on' if config.cache else 'off'}",
        f"- pending: {summary.pending} · errors (not scored): {summary.errors}",
        "",
    ]
    if summary.gaps:
        out += ["## Static vs interactive (same items)", "", *_md_table(*pair_rows(summary.gaps)), ""]
    out += ["## Results", "", *_md_table(*result_rows(summary)), ""]
    if summary.paired:
        out += ["## Paired comparison (interactive)", "", *_md_table(*pair_rows(summary.paired)), ""]
    methods = "; ".join(
        f"{r.mode}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.methods.items())) for r in summary.rows
    )
    out += [f"Verdicts by method: {methods}.", ""]
    if manifest.skipped_rows:
        out += ["## Malformed rows skipped", "", *(f"- {row}" for row in manifest.skipped_rows), ""]
    out += ["## Transcripts", ""]
    by_case: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_case[record.case_id].append(record)
    for case_id in manifest.case_ids:
        if case_id in by_case:
            first = by_case[case_id][0]
            gold = first.gold + (f" ({first.gold_letter})" if first.gold_letter else "")
            out += [f"### {case_id}: {gold}", "", "```"]
            for record in by_case[case_id]:
                out += transcript_lines(record)
            out += ["```", ""]
    return "\n".join(out)


def html_page(text: str, title: str) -> str:
    """The Markdown report as a page (tables and transcripts kept as preformatted text)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre></body></html>"
    )


def write_report(
    directory: Path, manifest: EpisodeManifest, records: Sequence[EpisodeRecord], errors: int
) -> EpisodeSummary:
    summary = summarize(manifest, records, errors)
    text = markdown(manifest, summary, records)
    (directory / "report.md").write_text(text, encoding="utf-8")
    (directory / "report.html").write_text(html_page(text, f"medcouncil episodes: {manifest.source}"), "utf-8")
    (directory / "summary.json").write_text(json.dumps(summary.model_dump(), indent=2), encoding="utf-8")
    return summary
