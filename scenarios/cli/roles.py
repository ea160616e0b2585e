"""``medcouncil roles``: does each role speak in its own format? (the role-format report of run folders)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medcouncil.serving.common.console import console
from medcouncil.serving.common.errors import ConfigError


def roles(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Benchmark or episode run folders.")],
    out: Annotated[Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="Only each run's first N items (in its item order), e.g. 100 of a 300-item run."
        ),
    ] = None,
) -> None:
    """Role formats of runs: per role the share of echo, own format, loops, empty and over-length turns; the critic's
    verdicts and their agreement with correctness; in episodes, valid actions and information gathered first."""
    from medcouncil.scenarios.role_format.report import actions_table, roles_table, run_roles, verdicts_table

    rows = [row for run in runs for row in run_roles(run, limit)]
    console.print(roles_table(rows))
    console.print(verdicts_table(rows))
    if any(row.actions is not None for row in rows):
        console.print(actions_table(rows))
    if out is not None:
        try:
            out.write_text(json.dumps([row.model_dump() for row in rows], indent=1) + "\n", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{out}: cannot be written ({error.strerror or error})") from error
        console.print(f"[notice]wrote {escape(str(out))}[/]")
