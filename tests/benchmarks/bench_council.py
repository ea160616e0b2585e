"""Council orchestration benchmark: how much of an episode is not spent waiting on the model?

Run ``python -m tests.benchmarks.bench_council [--episodes 5]``. Over N English episodes (retrieve, diagnose, critique)
it prints, for a zero-latency replay model and for the embedded llama.cpp server (cache off):

* orchestration overhead = (episode wall time − sum of model-call times) / episode wall time (goal <= 2% on the
  server), and the same with the retriever's search (a tool, not orchestration) also set aside;
* tokens and model calls per episode.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Annotated

import typer
from rich.table import Table

from medcouncil.agents.council import Council
from medcouncil.agents.protocol import Episode, Question, run_episode
from medcouncil.serving.common.console import console
from medcouncil.serving.components import ClientSettings
from medcouncil.serving.replay import ReplayModel
from medcouncil.serving.session import ModelSource, open_model
from medcouncil.tools.search import KnowledgeSearch
from medcouncil.tools.starter_pack import open_knowledge

CASES = [
    "A 24-year-old has episodic wheeze and a nocturnal cough relieved by salbutamol. What is the diagnosis?",
    "A 58-year-old man has crushing central chest pain with sweating; ECG shows ST elevation in II, III and aVF.",
    "A 70-year-old woman has fever, productive cough and right lower lobe consolidation; she is confused.",
    "A 45-year-old man wakes with a hot, swollen, very painful first metatarsophalangeal joint after drinking.",
    "A 30-year-old woman has weight loss, heat intolerance, tremor, palpitations and exophthalmos.",
    "A 65-year-old smoker has chronic productive cough and exertional dyspnoea; FEV1/FVC is 0.62.",
]
REPLIES = ["Asthma [1], then COPD.\nFinal answer: asthma.", "Sound; supported by [1].", "A"]


def _row(label: str, episodes: list[Episode]) -> list[str]:
    wall = statistics.mean(e.wall_time_s for e in episodes)
    model = statistics.mean(e.model_time_s for e in episodes)
    tools = statistics.mean(sum(t.latency_s for t in e.turns if t.agent == "retriever") for e in episodes)
    return [
        label,
        str(len(episodes)),
        f"{wall * 1000:.1f}",
        f"{model * 1000:.1f}",
        f"{tools * 1000:.1f}",
        f"{(wall - model) / wall * 100:.2f}%",
        f"{(wall - model - tools) / wall * 100:.2f}%",
        f"{statistics.mean(e.prompt_tokens + e.completion_tokens for e in episodes):.0f}",
        f"{statistics.mean(e.model_calls for e in episodes):.1f}",
    ]


async def _episodes(council: Council, count: int) -> list[Episode]:
    await run_episode(council, Question(text=CASES[-1]))  # warm-up: imports, first team
    return [await run_episode(council, Question(text=CASES[i % len(CASES)])) for i in range(count)]


async def _run(count: int) -> list[list[str]]:
    knowledge: KnowledgeSearch = open_knowledge()
    replay = Council(ReplayModel(REPLIES * (count + 1)), knowledge)
    rows = [_row("replay (0 latency)", await _episodes(replay, count))]
    async with open_model(ModelSource(), ClientSettings(cache=False), notice=lambda _: None) as model:
        rows.append(_row("embedded server", await _episodes(Council(model, knowledge), count)))
    return rows


def main(episodes: Annotated[int, typer.Option(help="Episodes per model.")] = 5) -> None:
    """Run the orchestration benchmark and print its table."""
    rows = asyncio.run(_run(episodes))
    table = Table(title="council orchestration overhead (means per episode)")
    for column in (
        "model",
        "episodes",
        "wall ms",
        "model ms",
        "retrieval ms",
        "overhead",
        "minus retrieval",
        "tokens",
        "calls",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
