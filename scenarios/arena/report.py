"""The arena's report: per judge, Bradley-Terry ratings with bootstrap CIs, the online Elo beside them, a column per
dataset, the win-rate matrix and the judge's position consistency; ``report.md`` and ``report.html`` (with a CI
plot) in the run folder."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from medcouncil.scenarios.arena.items import ArenaItem
from medcouncil.scenarios.arena.journal import AnswerLine, ArenaJournal, ArenaManifest, JudgementLine, read_manifest
from medcouncil.scenarios.arena.ratings import Battle, Rating, rate, win_rates

BOOTSTRAP_ROUNDS = 1000


class JudgeResult(BaseModel):
    judge: str
    ratings: list[Rating]
    wins: dict[str, dict[str, float | None]]
    judged: int
    consistent: int
    """Pairs whose two orders agreed (a judge that sees one order: all)."""
    skipped: int = 0
    two_orders: bool = True
    """Whether the judge saw each pair in both orders (a judge model)."""

    @property
    def consistency(self) -> float | None:
        return self.consistent / self.judged if self.judged else None


def battles(judgements: Sequence[JudgementLine], datasets: dict[str, str]) -> list[Battle]:
    """The judgements (not skipped) as battles: first against second."""
    side: dict[str, Literal["a", "b", "tie"]] = {"first": "a", "second": "b", "tie": "tie"}
    return [
        Battle(a=j.first, b=j.second, outcome=side[j.outcome], dataset=datasets.get(j.item_id, ""), item_id=j.item_id)
        for j in judgements
        if not j.skipped
    ]


def results(
    items: Sequence[ArenaItem],
    judgements: Sequence[JudgementLine],
    anchor: str | None = None,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> list[JudgeResult]:
    """One result per judge that judged anything, in the order judges first appear."""
    datasets = {item.id: item.dataset for item in items}
    out = []
    for judge in dict.fromkeys(j.judge for j in judgements):
        mine = [j for j in judgements if j.judge == judge]
        fought = battles(mine, datasets)
        if not fought:
            continue
        kept = [j for j in mine if not j.skipped]
        rated = {name for battle in fought for name in (battle.a, battle.b)}
        out.append(
            JudgeResult(
                judge=judge,
                # a judge under which the anchor never fought (sampled pairs, failed answers) is anchored on its mean
                ratings=rate(fought, anchor=anchor if anchor in rated else None, rounds=rounds, seed=seed),
                wins=win_rates(fought),
                judged=len(kept),
                consistent=sum(j.consistent for j in kept),
                skipped=len(mine) - len(kept),
                two_orders=any(len(j.orders) == 2 for j in kept),
            )
        )
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def rating_rows(result: JudgeResult) -> tuple[list[str], list[list[object]]]:
    datasets = sorted({d for r in result.ratings for d in r.by_dataset})
    header = ["#", "contestant", "rating", "95% CI", "online Elo", "battles", "W-L-T", *datasets]
    rows: list[list[object]] = []
    for rank, r in enumerate(result.ratings, 1):
        columns = [f"{r.by_dataset[d]:.0f}" if d in r.by_dataset else "-" for d in datasets]
        rows.append(
            [
                rank,
                r.contestant,
                f"{r.rating:.0f}",
                f"{r.low:.0f}-{r.high:.0f}",
                f"{r.online:.0f}",
                r.battles,
                f"{r.wins}-{r.losses}-{r.ties}",
                *columns,
            ]
        )
    return header, rows


def win_rows(result: JudgeResult) -> tuple[list[str], list[list[object]]]:
    names = [r.contestant for r in result.ratings]
    rows: list[list[object]] = []
    for a in names:
        cells = [result.wins.get(a, {}).get(b) for b in names]
        rows.append(
            [a, *("" if a == b else "-" if c is None else f"{c:.0%}" for b, c in zip(names, cells, strict=True))]
        )
    return ["won against →", *names], rows


def answer_rows(manifest: ArenaManifest, answers: Sequence[AnswerLine]) -> list[list[object]]:
    rows: list[list[object]] = []
    for contestant in manifest.config.contestants:
        mine = [a for a in answers if a.contestant == contestant]
        n = len(mine) or 1
        rows.append(
            [
                contestant,
                len(mine),
                f"{sum(a.model_calls for a in mine) / n:.1f}",
                f"{sum(a.prompt_tokens + a.completion_tokens for a in mine) / n:.0f}",
                f"{sum(a.wall_time_s for a in mine) / n:.1f}",
            ]
        )
    return rows


def _consistency(result: JudgeResult) -> str:
    if not result.two_orders:
        return "one order per pair (" + ("sides drawn at random" if result.judge == "human" else "deterministic") + ")"
    share = result.consistency
    shown = f"{share:.0%}" if share is not None else "-"
    return f"position consistency {shown} ({result.consistent} of {result.judged} pairs agreed in both orders)"


def markdown(
    manifest: ArenaManifest,
    items: Sequence[ArenaItem],
    answers: Sequence[AnswerLine],
    found: list[JudgeResult],
    errors: int,
) -> str:
    config = manifest.config
    lines = [
        f"# Arena: {config.source}",
        "",
        f"{len(items)} items · contestants {', '.join(config.contestants)} · "
        f"{'all pairs' if config.pairs is None else f'{config.pairs} pairs'} per item · model `{config.model}` · "
        f"judge model `{config.judge_identity or '-'}` · "
        f"seed {config.seed} · {errors} failed attempts journaled",
        "",
        "Ratings: Bradley-Terry maximum likelihood on the Elo scale (ties count half a win for each side), "
        f"95% bootstrap CIs over battles ({BOOTSTRAP_ROUNDS} resamples); the online Elo depends on the order of the "
        "battles and is shown for comparison only.",
        "",
        "## Answers",
        "",
        *_table(
            ["contestant", "answers", "calls/answer", "tokens/answer", "s/answer"],
            answer_rows(manifest, answers),
        ),
    ]
    for result in found:
        header, rows = rating_rows(result)
        wheader, wrows = win_rows(result)
        lines += [
            "",
            f"## Judge: {result.judge}",
            "",
            _consistency(result) + (f"; {result.skipped} skipped" if result.skipped else ""),
            "",
        ]
        lines += [*_table(header, rows), "", "Win rates (row against column, ties half):", "", *_table(wheader, wrows)]
    return "\n".join(lines) + "\n"


def plot_svg(result: JudgeResult, width: int = 520) -> str:
    """Each contestant's rating as a dot on its 95% CI."""
    rows = result.ratings
    height = 30 + 28 * len(rows)
    low = min(r.low for r in rows) - 20
    high = max(r.high for r in rows) + 20
    left, right = 160, width - 20

    def x(value: float) -> float:
        return left + (value - low) / (high - low or 1) * (right - left)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, r in enumerate(rows):
        y = 20 + 28 * i
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">{html.escape(r.contestant)}</text>'
        )
        parts.append(
            f'<line x1="{x(r.low):.1f}" x2="{x(r.high):.1f}" y1="{y}" y2="{y}" stroke="#555" stroke-width="2"/>'
        )
        tip = f"{r.rating:.0f} ({r.low:.0f}-{r.high:.0f})"
        parts.append(f'<circle cx="{x(r.rating):.1f}" cy="{y}" r="5" fill="#d62728"><title>{tip}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="11">{low:.0f}</text>')
    parts.append(f'<text x="{right}" y="{height - 4}" font-size="11" text-anchor="end">{high:.0f}</text>')
    return "".join(parts) + "</svg>"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(manifest: ArenaManifest, answers: Sequence[AnswerLine], found: list[JudgeResult], errors: int) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>medcouncil arena</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style>",
        f"<h1>Arena: {html.escape(manifest.config.source)}</h1>",
        "<h2>Answers</h2>",
        _html_table(
            ["contestant", "answers", "calls/answer", "tokens/answer", "s/answer"],
            answer_rows(manifest, answers),
        ),
    ]
    for result in found:
        header, rows = rating_rows(result)
        wheader, wrows = win_rows(result)
        parts += [
            f"<h2>Judge: {html.escape(result.judge)}</h2><p>{html.escape(_consistency(result))}</p>",
            plot_svg(result),
            _html_table(header, rows),
            "<p>Win rates (row against column, ties half)</p>",
            _html_table(wheader, wrows),
        ]
    return "".join(parts)


def write_report(directory: Path, anchor: str | None = None) -> tuple[Path, Path, list[JudgeResult]]:
    """Write ``report.md`` and ``report.html`` from the run folder's journals."""
    manifest = read_manifest(directory)
    journal = ArenaJournal(directory)
    items, answers = journal.items(), journal.answers()
    errors = len(journal.errors())
    found = results(items, journal.judgements(), anchor=anchor, seed=manifest.config.seed)
    md, page = directory / "report.md", directory / "report.html"
    md.write_text(markdown(manifest, items, answers, found, errors), encoding="utf-8")
    page.write_text(html_page(manifest, answers, found, errors), encoding="utf-8")
    return md, page, found
