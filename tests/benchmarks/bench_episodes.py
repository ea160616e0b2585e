"""Episode benchmark: throughput, cost and orchestration overhead of interactive episodes.

Run ``python -m tests.benchmarks.bench_episodes [--cases 3] [--modes single,council] [--budget 4]``. It plays
the first N AgentClinic cases (lookup patient) in each mode, on a zero-latency replay model and on the embedded
llama.cpp server with the response cache off, one mode after the other per case (interleaved), and prints per mode:

* episodes per hour (wall time of the interview, judging excluded);
* tokens and model calls per episode, actions per episode;
* orchestration overhead = (interview wall time - time waiting on the model) / wall time (goal <= 2% on the
  server), and the same with the council's retrieval (a tool call, not orchestration) also set aside.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.council import Council
from medcouncil.agents.interview import Interview, interview
from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer
from medcouncil.scenarios.bench.modes import Doctor, Setting, episode_modes
from medcouncil.scenarios.bench.modes import doctors as build_doctors
from medcouncil.scenarios.episodes.load import load_cases
from medcouncil.serving.common.console import console
from medcouncil.serving.components import ClientSettings
from medcouncil.serving.replay import ReplayModel
from medcouncil.serving.session import ModelSource, open_model
from medcouncil.tools.starter_pack import open_knowledge

REPLAY_STEPS = ["ASK: Do you have double vision?", "EXAM: vital signs", "TEST: complete blood count"]
"""The replay doctor's actions, in turn (then DIAGNOSIS when the budget is spent)."""


async def patient(case: ClinicalCase, request: str) -> Reveal:
    return patient_answer(case, request)


async def measure(case: ClinicalCase, request: str) -> Reveal:
    return measurement_result(case, request)


def retrieval_s(record: Interview) -> float:
    return sum(t.latency_s for e in record.doctor_episodes for t in e.turns if t.agent == "retriever")


def row(label: str, mode: str, records: list[Interview]) -> list[str]:
    wall = sum(r.wall_time_s for r in records)
    model = sum(r.model_time_s for r in records)
    tools = sum(retrieval_s(r) for r in records)
    actions = statistics.mean(len([s for s in r.steps if s.by == "doctor"]) for r in records)
    tokens, calls = statistics.mean(r.tokens for r in records), statistics.mean(r.model_calls for r in records)
    return [
        label,
        mode,
        str(len(records)),
        f"{3600 * len(records) / wall:.0f}" if wall else "–",
        f"{wall / len(records):.2f}",
        f"{(wall - model) / wall * 100:.2f}%" if wall else "–",
        f"{(wall - model - tools) / wall * 100:.2f}%" if wall else "–",
        f"{tokens:.0f}",
        f"{calls:.1f}",
        f"{actions:.1f}",
    ]


def doctors(model: ReplayModel | object, knowledge: object, modes: list[str]) -> dict[str, Doctor]:
    """The registry's doctors on ``model`` (a council per mode: a council plays one case at a time)."""
    setting = Setting(model, lambda structure: Council(model, knowledge))  # type: ignore[arg-type]
    return {mode: made for mode, made in build_doctors(setting, modes).items()}


async def play_all(cases: list[ClinicalCase], players: dict[str, Doctor], budget: int) -> dict[str, list[Interview]]:
    """Each case in every mode in turn (A, B, A, B...): the machine's drift hits every mode alike."""
    played: dict[str, list[Interview]] = {mode: [] for mode in players}
    for case in cases:
        for mode, doctor in players.items():
            played[mode].append(await interview(doctor.asker, case, patient, measure, budget, doctor.decider))
    return played


def replay_model(budget: int, cases: int, modes: list[str]) -> ReplayModel:
    """Enough scripted replies for every call of every mode (a council step is diagnosis, critique, choice)."""
    step = [*REPLAY_STEPS[: max(1, budget)], "DIAGNOSIS: Myasthenia gravis"]
    per_step = ["Sound.", "APPROVE", "A"]
    replies = [reply for action in step for reply in (action, *per_step)]
    return ReplayModel(replies * cases * len(modes) * 4)


async def run(case_count: int, modes: list[str], budget: int, data_dir: Path | None) -> list[list[str]]:
    cases, _ = load_cases("agentclinic", case_count, data_root=data_dir)
    knowledge = open_knowledge()
    rows = []
    replay = replay_model(budget, len(cases), modes)
    await play_all(cases[:1], doctors(replay, knowledge, modes), budget)  # warm-up: imports, first team
    for mode, records in (await play_all(cases, doctors(replay, knowledge, modes), budget)).items():
        rows.append(row("replay (0 latency)", mode, records))
    async with open_model(ModelSource(), ClientSettings(cache=False), notice=lambda _: None) as model:
        for mode, records in (await play_all(cases, doctors(model, knowledge, modes), budget)).items():
            rows.append(row("embedded server", mode, records))
    return rows


def main(
    cases: Annotated[int, typer.Option(min=1, help="AgentClinic cases per mode.")] = 3,
    modes: Annotated[str, typer.Option(help=f"Doctors: {', '.join(episode_modes())}.")] = "single,council",
    budget: Annotated[int, typer.Option(min=1, help="Actions before the doctor must commit.")] = 4,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder holding episodes/.")] = None,
) -> None:
    """Run the episode benchmark and print its table."""
    chosen = [m.strip() for m in modes.split(",") if m.strip() in episode_modes()]
    rows = asyncio.run(run(cases, chosen, budget, data_dir))
    table = Table(title=f"interactive episodes (AgentClinic, budget {budget}, lookup patient; means per episode)")
    for column in (
        "model",
        "doctor",
        "episodes",
        "episodes/h",
        "s/episode",
        "overhead",
        "minus retrieval",
        "tokens",
        "calls",
        "actions",
    ):
        table.add_column(column, justify="left" if column in ("model", "doctor") else "right")
    for line in rows:
        table.add_row(*line)
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
