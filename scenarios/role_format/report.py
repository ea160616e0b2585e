"""The role-format report of a run folder (a benchmark or an episode run), per mode: ``medcouncil roles RUN...``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel
from rich.table import Table

from medcouncil.scenarios.bench.journal import SAMPLES, read_manifest, read_records
from medcouncil.scenarios.episodes.harness import read_episode_records
from medcouncil.scenarios.episodes.run import read_episode_manifest
from medcouncil.scenarios.role_format.measure import (
    Actions,
    RoleFormat,
    Verdicts,
    measure_actions,
    measure_roles,
    measure_verdicts,
)
from medcouncil.serving.common.errors import ConfigError


class ModeRoles(BaseModel):
    """One mode of one run."""

    run: str
    mode: str
    items: int
    roles: list[RoleFormat]
    verdicts: Verdicts
    actions: Actions | None = None
    """Episode runs only."""


def run_roles(directory: Path, limit: int | None = None) -> list[ModeRoles]:
    """Every mode of the run in ``directory``, measured; with ``limit``, on the run's first ``limit`` items only (in
    the order of its manifest, the order ``bench --limit`` chose them: a longer run reports its first items alone).

    Raises:
        ConfigError: ``directory`` holds no run (one line, naming it).
    """
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such run folder")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {limit}")
    rows: list[ModeRoles] = []
    episodes = read_episode_manifest(directory)
    if episodes is not None:  # else a benchmark run
        cases = set(episodes.case_ids[:limit])
        records = [
            r
            for r in read_episode_records(directory)
            if r.interview is not None and (limit is None or r.case_id in cases)
        ]
        for mode in sorted({r.mode for r in records}):
            mine = [r for r in records if r.mode == mode]
            interviews = [r.interview for r in mine if r.interview is not None]
            steps = [step for record in interviews for step in record.doctor_episodes]
            every = measure_verdicts((step, False) for step in steps)  # the distribution over every step
            # Correctness belongs to the encounter: only the committing step's verdict is set against it.
            final = measure_verdicts(
                (r.interview.doctor_episodes[-1], r.correct)
                for r in mine
                if r.interview and r.interview.doctor_episodes
            )
            verdicts = final.model_copy(
                update={"turns": every.turns, "approve": every.approve, "approve_median": every.approve_median}
            )
            rows.append(
                ModeRoles(
                    run=directory.name,
                    mode=mode,
                    items=len(mine),
                    roles=measure_roles(steps, steps=True),
                    verdicts=verdicts,
                    actions=measure_actions(interviews),
                )
            )
        return rows
    if not (directory / SAMPLES).is_file():
        raise ConfigError(f"{directory}: not a run folder (no {SAMPLES})")
    samples = read_records(directory)
    if limit is not None:
        chosen = set(read_manifest(directory).sample_ids[:limit])
        samples = [r for r in samples if r.sample_id in chosen]
    for mode in sorted({r.mode for r in samples}):
        answered = [r for r in samples if r.mode == mode]
        rows.append(
            ModeRoles(
                run=directory.name,
                mode=mode,
                items=len(answered),
                roles=measure_roles(r.episode for r in answered),
                verdicts=measure_verdicts((r.episode, r.correct) for r in answered),
            )
        )
    return rows


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def roles_table(rows: Sequence[ModeRoles]) -> Table:
    table = Table(title="Role formats", title_justify="left")
    for column in ("run", "mode", "role", "turns", "echo", "format", "loops", "empty", "over", "words"):
        table.add_column(column, justify="left" if column in ("run", "mode", "role") else "right")
    for row in rows:
        for role in row.roles:
            if role.turns:
                shares = (role.echo, role.format, role.loops, role.empty, role.over_length)
                cells = [_share(v) for v in shares]
                table.add_row(row.run, row.mode, role.role, str(role.turns), *cells, f"{role.median_words:.0f}")
    return table


def verdicts_table(rows: Sequence[ModeRoles]) -> Table:
    table = Table(title="Critic verdicts (last verdict of each item against the answer)", title_justify="left")
    columns = (
        "run",
        "mode",
        "verdicts",
        "APPROVE",
        "items",
        "agreement",
        "correct | APPROVE",
        "APPROVE | correct",
        "P(A) median",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "mode") else "right")
    for row in rows:
        v = row.verdicts
        if v.turns:
            table.add_row(
                row.run,
                row.mode,
                str(v.turns),
                _share(v.approve),
                str(v.items),
                _share(v.agreement),
                _share(v.approve_precision),
                _share(v.approve_recall),
                "–" if v.approve_median is None else f"{v.approve_median:.3f}",
            )
    return table


def actions_table(rows: Sequence[ModeRoles]) -> Table:
    table = Table(title="Episode actions", title_justify="left")
    for column in ("run", "mode", "episodes", "doctor steps", "valid", "gathers before diagnosing", "actions"):
        table.add_column(column, justify="left" if column in ("run", "mode") else "right")
    for row in rows:
        if (a := row.actions) is not None:
            cells = (str(a.episodes), str(a.steps), _share(a.valid), _share(a.gathers_first), f"{a.mean_actions:.1f}")
            table.add_row(row.run, row.mode, *cells)
    return table
