"""``medcouncil compare``: models (one bench run each) on the same items."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medcouncil.serving.common.console import console


def compare(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Two or more finished bench run folders.")],
    out: Annotated[Path | None, typer.Option(help="Folder for compare.md/.html/.json (./runs/compare-TIME).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap CIs.")] = 0,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Only the first run's first N items (its item order), e.g. 100 of 300."),
    ] = None,
) -> None:
    """Compare models (one bench run each, e.g. base vs adapter) on the same items: CIs and McNemar per mode."""
    from rich.table import Table

    from medcouncil.scenarios.bench.compare import LEFT_OUT, scope, tables, write
    from medcouncil.scenarios.bench.compare import compare as compare_runs

    comparison = compare_runs(runs, seed=seed, limit=limit)
    (header, rows), (_, paired) = tables(comparison)
    table = Table(title=f"{comparison.dataset} · {comparison.items} items{scope(comparison)}")
    for name in header[:8]:
        table.add_column(name, overflow="fold")  # a long model name wraps instead of being cut short
    for row in rows:
        table.add_row(*map(str, row[:8]))
    console.print(table)
    if any(comparison.dropped.values()):  # unfinished runs, or other item lists: say what was left out
        left = ", ".join(f"{escape(label)} {count}" for label, count in comparison.dropped.items())
        console.print(f"[warning]compared on the {comparison.items} items every run answered; {LEFT_OUT}: {left}[/]")
    for line in paired:
        console.print(
            f"{line[0]}: {line[1]}: {line[2]} items, {line[3]}% vs {line[4]}%, discordant {line[5]} vs "
            f"{line[6]}, McNemar p = {line[7]}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    md_path, html_path = write(comparison, out or Path("runs") / f"compare-{stamp}")
    console.print(f"[notice]wrote {escape(str(md_path))} and {escape(str(html_path))}[/]")
